//! Reading a collected message for people: its normalized form, its HTML body made safe to show,
//! and its attachments checked against what was collected.
//!
//! Everything in a message is written by whoever sent it. The HTML body goes through
//! [`sanitize_html`] and comes with the policy it must be served under ([`SafeHtml::policy`]):
//! no script of the message runs, nothing loads but `data:` images and inline styles, and only
//! our own pages may frame it. An attachment is handed out only when its bytes, read again from
//! the raw message, still have the digest recorded when it was collected. How any of it is
//! shown (pages, downloads) is the shells' business.

use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use oauthimap_mime::{Limits, Normalized};
use oauthimap_store::StoredMessage;
use sha2::Digest as _;

pub use oauthimap_mime::{Address as MailAddress, Normalized as MailContent};

use crate::{AppError, Core, Result};

/// The policy of the sanitized HTML body: nothing may load but `data:` images and inline
/// styles, no script of the message runs, and only our own pages may frame it.
const HTML_BODY_CSP_BASE: &str = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; \
                                  frame-ancestors 'self'; base-uri 'none'; form-action 'none'";
/// The one script the HTML body's document runs: it tells the message page its height, so the
/// frame fits the message. The policy admits this script by its hash and no other, so nothing in
/// the message could run even if the sanitizer missed it; the frame keeps an opaque origin
/// (`sandbox allow-scripts`, never `allow-same-origin`), so the script cannot reach our pages.
const FRAME_HEIGHT_SCRIPT: &str = "(function(){function t(){var b=document.body,s=getComputedStyle(b);parent.postMessage({oauthimapFrameHeight:Math.ceil(Math.max(b.scrollHeight,b.getBoundingClientRect().height)+parseFloat(s.marginTop)+parseFloat(s.marginBottom))},'*')}addEventListener('load',t);if(window.ResizeObserver){new ResizeObserver(t).observe(document.body)}t()})()";

/// Image types an inline (`cid:`) image of the HTML body may have to be shown.
const SHOWN_IMAGE_TYPES: &[&str] = &[
    "image/png",
    "image/jpeg",
    "image/gif",
    "image/webp",
    "image/bmp",
];
/// Most bytes of inline images put into one HTML body as `data:` URLs; the rest stay out.
const MAX_INLINE_IMAGE_BYTES: usize = 8 * 1024 * 1024;
/// CSS properties a `style` attribute may keep: none of them can load anything.
const SAFE_CSS_PROPERTIES: &[&str] = &[
    "color",
    "background-color",
    "font",
    "font-family",
    "font-size",
    "font-style",
    "font-weight",
    "font-variant",
    "text-align",
    "text-decoration",
    "text-indent",
    "text-transform",
    "line-height",
    "letter-spacing",
    "word-spacing",
    "white-space",
    "vertical-align",
    "direction",
    "width",
    "height",
    "max-width",
    "min-width",
    "max-height",
    "min-height",
    "margin",
    "margin-top",
    "margin-right",
    "margin-bottom",
    "margin-left",
    "padding",
    "padding-top",
    "padding-right",
    "padding-bottom",
    "padding-left",
    "border",
    "border-top",
    "border-right",
    "border-bottom",
    "border-left",
    "border-color",
    "border-style",
    "border-width",
    "border-radius",
    "border-collapse",
    "border-spacing",
    "display",
    "float",
    "clear",
    "list-style-type",
    "table-layout",
    "overflow-wrap",
    "word-break",
];

/// A stored message as people read it.
#[derive(Debug, Clone)]
pub struct MessageView {
    /// The stored record (ids, when it was collected, by which receiver).
    pub message: StoredMessage,
    /// The message as normalized when it was collected (addresses, headers, text, warnings,
    /// attachments). Its HTML body is **not** sanitized: show it only through
    /// [`Core::message_html`].
    pub content: Normalized,
    /// The name of the receiver that collected it, when that receiver still exists.
    pub receiver: Option<String>,
}

/// A message's HTML body made safe to show: a whole document, and the Content-Security-Policy
/// it must be served with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SafeHtml {
    pub document: String,
    /// [`SafeHtml::policy`].
    pub csp: &'static str,
}

impl SafeHtml {
    /// The policy of a sanitized HTML body (also for whatever is served in its place, such as
    /// an error text): [`HTML_BODY_CSP_BASE`], the height script by its hash, sandboxed.
    pub fn policy() -> &'static str {
        static CSP: LazyLock<String> = LazyLock::new(|| {
            let hash = STANDARD.encode(sha2::Sha256::digest(FRAME_HEIGHT_SCRIPT.as_bytes()));
            format!("{HTML_BODY_CSP_BASE}; script-src 'sha256-{hash}'; sandbox allow-scripts")
        });
        &CSP
    }
}

/// One attachment, read back from the raw message and checked against its recorded digest.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MessageAttachment {
    /// A name safe to save it under (see `safe_filename` of the normalized message).
    pub filename: String,
    pub content: Vec<u8>,
}

impl Core {
    /// A stored message with its normalized content and the name of its receiver.
    pub async fn message_view(&self, id: i64) -> Result<MessageView> {
        let message = self.store().message(id).await?;
        let content = normalized(&message)?;
        let receiver = match message.receiver_id {
            Some(r) => self
                .find_receiver(&r.to_string())
                .await
                .ok()
                .map(|r| r.fields.name),
            None => None,
        };
        Ok(MessageView {
            message,
            content,
            receiver,
        })
    }

    /// The HTML body of message `id`, sanitized (its `cid:` images inlined as `data:` URLs), as
    /// a document of its own for a sandboxed frame; `None` when the message has no HTML body.
    pub async fn message_html(&self, id: i64) -> Result<Option<SafeHtml>> {
        let (message, raw) = self.message(id).await?;
        let content = normalized(&message)?;
        let Some(body) = content.html.as_deref() else {
            return Ok(None);
        };
        let images = if body.contains("cid:") {
            inline_images(&raw)
        } else {
            HashMap::new()
        };
        let document = format!(
            "<!doctype html><html><head><meta charset=\"utf-8\">\
             <meta name=\"referrer\" content=\"no-referrer\">\
             <style>body{{font-family:system-ui,sans-serif;margin:.6rem;overflow-wrap:anywhere}}\
             img{{max-width:100%;height:auto}}</style></head><body>{}\
             <script>{FRAME_HEIGHT_SCRIPT}</script></body></html>",
            sanitize_html(body, images)
        );
        Ok(Some(SafeHtml {
            document,
            csp: SafeHtml::policy(),
        }))
    }

    /// Attachment `index` (numbered from 0, as in the normalized message) of message `id`,
    /// refused when its bytes no longer match the digest recorded at collection.
    pub async fn message_attachment(&self, id: i64, index: usize) -> Result<MessageAttachment> {
        let (message, raw) = self.message(id).await?;
        let content = normalized(&message)?;
        let missing = || AppError::NotFound {
            what: "attachment",
            key: index.to_string(),
            hint: format!(
                " in message {id}: it has {} attachment(s), numbered from 0",
                content.attachments.len()
            ),
        };
        let listed = content.attachments.get(index).ok_or_else(missing)?;
        let bytes = oauthimap_mime::attachment_bytes(&raw, &stored_limits(), index)
            .map_err(|refusal| {
                AppError::Damaged(format!("cannot read message {id}: {}", refusal.detail))
            })?
            .ok_or_else(missing)?;
        if oauthimap_mime::sha256_hex(&bytes) != listed.sha256 {
            return Err(AppError::Damaged(format!(
                "attachment {index} of message {id} reads differently now than when it was \
                 collected; download the raw message and open it in a mail program"
            )));
        }
        Ok(MessageAttachment {
            filename: listed.safe_filename.clone(),
            content: bytes,
        })
    }
}

/// The normalized message stored with `m`.
fn normalized(m: &StoredMessage) -> Result<Normalized> {
    serde_json::from_str(&m.normalized).map_err(|e| {
        AppError::Damaged(format!(
            "message {} was stored in a form this version cannot read ({e}); download the raw \
             message instead",
            m.id
        ))
    })
}

/// The limits to read a stored message with: it was accepted when it was collected, so its size
/// is not checked again; depth and attachment count are the collector's, so attachments are
/// numbered as in the stored normalized message.
fn stored_limits() -> Limits {
    Limits {
        max_size: u64::MAX,
        ..Limits::default()
    }
}

/// The inline images of a message as `data:` URLs by lowercase Content-ID, for `cid:` links in
/// its HTML body: only plain raster types, at most [`MAX_INLINE_IMAGE_BYTES`] in all.
fn inline_images(raw: &[u8]) -> HashMap<String, String> {
    let Ok((n, bytes)) = oauthimap_mime::normalize_with_bytes(raw, &stored_limits()) else {
        return HashMap::new();
    };
    let mut budget = MAX_INLINE_IMAGE_BYTES;
    let mut images = HashMap::new();
    for (attachment, content) in n.attachments.iter().zip(bytes) {
        let Some(cid) = &attachment.content_id else {
            continue;
        };
        if !SHOWN_IMAGE_TYPES.contains(&attachment.content_type.as_str()) || content.len() > budget
        {
            continue;
        }
        budget -= content.len();
        images.insert(
            cid.to_lowercase(),
            format!(
                "data:{};base64,{}",
                attachment.content_type,
                STANDARD.encode(&content)
            ),
        );
    }
    images
}

/// Whether `url` (lowercase) is a `data:` URL of an image type we show.
fn is_shown_image_data(url: &str) -> bool {
    url.strip_prefix("data:").is_some_and(|rest| {
        SHOWN_IMAGE_TYPES.iter().any(|t| {
            rest.strip_prefix(t)
                .is_some_and(|after| after.starts_with([';', ',']))
        })
    })
}

/// The HTML of a message made safe to show: no script, no event handler, no form, no frame, no
/// `<style>` sheet, no CSS property that can load anything, no relative or remote image (a
/// `cid:` image becomes the `data:` URL in `images`, by lowercase Content-ID, or goes), links
/// only to `http`, `https`, `mailto` and `tel` with `rel="noopener noreferrer"`. Formatting
/// (tables, fonts, colours) stays.
fn sanitize_html(html: &str, images: HashMap<String, String>) -> String {
    let mut b = ammonia::Builder::default();
    b.add_tags(["font"])
        .add_tag_attributes("font", ["color", "face", "size"])
        .add_tag_attributes(
            "table",
            ["width", "border", "cellpadding", "cellspacing", "bgcolor"],
        )
        .add_tag_attributes("td", ["width", "height", "valign", "bgcolor", "nowrap"])
        .add_tag_attributes("th", ["width", "height", "valign", "bgcolor", "nowrap"])
        .add_tag_attributes("tr", ["valign", "bgcolor"])
        .add_tag_attributes("p", ["align"])
        .add_tag_attributes("div", ["align"])
        .add_generic_attributes(["style", "dir"])
        .filter_style_properties(SAFE_CSS_PROPERTIES.iter().copied().collect())
        .url_schemes(HashSet::from([
            "http", "https", "mailto", "tel", "cid", "data",
        ]))
        .url_relative(ammonia::UrlRelative::Deny)
        .attribute_filter(move |element, attribute, value| {
            let lower = value.trim().to_ascii_lowercase();
            match (element, attribute) {
                ("img", "src") => {
                    if let Some(cid) = lower.strip_prefix("cid:") {
                        images.get(cid).map(|url| Cow::Owned(url.clone()))
                    } else if is_shown_image_data(&lower) {
                        Some(Cow::Borrowed(value))
                    } else {
                        None
                    }
                }
                // `cid:` and `data:` are for images only.
                _ if lower.starts_with("cid:") || lower.starts_with("data:") => None,
                _ => Some(Cow::Borrowed(value)),
            }
        });
    b.clean(html).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn clean(html: &str) -> String {
        sanitize_html(html, HashMap::new())
    }

    #[test]
    fn scripts_handlers_and_remote_content_go_text_stays() {
        let out = clean(
            "<p>Hello <b>Ann</b></p><script>alert(1)</script>\
             <img src=x onerror=alert(2) alt=broken>\
             <img src=\"https://tracker.example/pixel.gif\" alt=pixel>\
             <img src=\"//tracker.example/p.gif\"><img src=\"/local.png\">\
             <a href=\"javascript:alert(3)\">js</a><a href=\"https://example.com/\">site</a>\
             <iframe src=\"https://evil.example/\"></iframe><form action=/x><input name=a></form>\
             <style>body{background:url(https://evil.example/s)}</style>\
             <div style=\"color:red;background-image:url(https://evil.example/b)\">styled</div>\
             <svg><a><style><img src=x onerror=alert(4)></style></a></svg>",
        );
        for gone in [
            "script",
            "alert",
            "onerror",
            "tracker.example",
            "local.png",
            "javascript",
            "iframe",
            "evil.example",
            "<form",
            "<input",
            "<style",
            "<svg",
        ] {
            assert!(!out.contains(gone), "{gone:?} survived in {out}");
        }
        for kept in [
            "Hello <b>Ann</b>",
            "alt=\"broken\"",
            "alt=\"pixel\"",
            ">js</a>",
            "<a href=\"https://example.com/\" rel=\"noopener noreferrer\">site</a>",
            "<div style=\"color:red\">styled</div>",
        ] {
            assert!(out.contains(kept), "{kept:?} missing from {out}");
        }
    }

    #[test]
    fn cid_images_become_data_urls_and_data_stays_for_images_only() {
        let images = HashMap::from([(
            "logo@example.com".to_owned(),
            "data:image/png;base64,iVBORw0KGgo=".to_owned(),
        )]);
        let out = sanitize_html(
            "<img src=\"cid:Logo@example.com\" alt=logo><img src=\"cid:unknown@x\" alt=u>\
             <img src=\"data:image/gif;base64,R0lGOD==\" alt=g>\
             <img src=\"data:image/svg+xml;base64,PHN2Zz4=\" alt=s>\
             <a href=\"data:text/html;base64,PHNjcmlwdD4=\">d</a><a href=\"cid:x\">c</a>",
            images,
        );
        assert!(
            out.contains("<img src=\"data:image/png;base64,iVBORw0KGgo=\" alt=\"logo\">"),
            "{out}"
        );
        assert!(out.contains("<img alt=\"u\">"), "{out}");
        assert!(
            out.contains("<img src=\"data:image/gif;base64,R0lGOD==\" alt=\"g\">"),
            "{out}"
        );
        assert!(out.contains("<img alt=\"s\">"), "{out}");
        assert!(!out.contains("text/html"), "{out}");
        assert!(!out.contains("cid:"), "{out}");
    }

    #[test]
    fn mail_formatting_survives() {
        let out = clean(
            "<table width=\"600\" cellpadding=\"4\" bgcolor=\"#eeeeee\"><tr><td valign=\"top\">\
             <font color=\"#333\" face=\"Arial\">Cell</font></td></tr></table>",
        );
        assert!(out.contains("width=\"600\""), "{out}");
        assert!(
            out.contains("<font color=\"#333\" face=\"Arial\">Cell</font>"),
            "{out}"
        );
        assert!(out.contains("valign=\"top\""), "{out}");
    }

    #[test]
    fn the_frame_policy_admits_only_the_height_script() {
        let csp = SafeHtml::policy();
        let hash = STANDARD.encode(sha2::Sha256::digest(FRAME_HEIGHT_SCRIPT.as_bytes()));
        assert!(csp.starts_with("default-src 'none';"), "{csp}");
        assert!(
            csp.contains(&format!("; script-src 'sha256-{hash}';")),
            "{csp}"
        );
        assert!(csp.ends_with("; sandbox allow-scripts"), "{csp}");
        assert!(!csp.contains("allow-same-origin"), "{csp}");
    }

    const RAW: &[u8] = b"From: Ann <ann@example.com>\r\n\
To: helpdesk@example.com\r\n\
Subject: Report\r\n\
Message-ID: <r1@example.com>\r\n\
Date: Fri, 1 Mar 2024 09:30:00 +0000\r\n\
MIME-Version: 1.0\r\n\
Content-Type: multipart/related; boundary=\"b1\"\r\n\
\r\n\
--b1\r\n\
Content-Type: text/html; charset=utf-8\r\n\
\r\n\
<p>See <img src=\"cid:dot@example.com\"></p>\r\n\
--b1\r\n\
Content-Type: image/png\r\n\
Content-ID: <dot@example.com>\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
iVBORw0KGgo=\r\n\
--b1\r\n\
Content-Type: application/pdf\r\n\
Content-Disposition: attachment; filename=\"../r\xc3\xa9sum\xc3\xa9 2024.pdf\"\r\n\
Content-Transfer-Encoding: base64\r\n\
\r\n\
JVBERi0xLjQK\r\n\
--b1--\r\n";

    #[test]
    fn attachments_are_read_back_from_the_raw_message() {
        let n = oauthimap_mime::normalize(RAW, &stored_limits()).unwrap();
        assert_eq!(n.attachments.len(), 2);
        let pdf = oauthimap_mime::attachment_bytes(RAW, &stored_limits(), 1)
            .unwrap()
            .unwrap();
        assert_eq!(pdf, b"%PDF-1.4\n");
        assert_eq!(oauthimap_mime::sha256_hex(&pdf), n.attachments[1].sha256);
        assert_eq!(n.attachments[1].safe_filename, "résumé 2024.pdf");
        assert_eq!(
            oauthimap_mime::attachment_bytes(RAW, &stored_limits(), 2).unwrap(),
            None
        );
        // The cid: image of the HTML body is there to inline.
        let images = inline_images(RAW);
        assert_eq!(
            images.get("dot@example.com").map(String::as_str),
            Some("data:image/png;base64,iVBORw0KGgo=")
        );
    }
}
