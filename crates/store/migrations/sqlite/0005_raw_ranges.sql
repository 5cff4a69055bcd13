-- The built-in store writes the raw messages of a delivered batch into one file in the data
-- folder: messages.raw_path names that file, raw_offset and raw_len where the message's bytes
-- are in it. Rows written before this migration (one file per message) have neither, and the
-- whole file is the message.
-- Keep in step with ../postgres/0005_raw_ranges.sql.

ALTER TABLE messages ADD COLUMN raw_offset BIGINT;
ALTER TABLE messages ADD COLUMN raw_len BIGINT;
