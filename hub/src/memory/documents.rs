//! Documents an operator adds to the memory (printer manuals, material data sheets, notes):
//! Markdown, plain text or PDF, read as hostile input. A PDF's text is extracted on the
//! blocking pool under a time limit, and a parser that panics on a malformed file is a
//! refusal, not a crash.

use std::time::Duration;

/// The largest document accepted.
pub const MAX_BYTES: usize = 20 * 1024 * 1024;
/// The most text kept from one document, in characters.
pub const MAX_CHARS: usize = 1_000_000;
/// How long a PDF may take to read.
const PDF_TIME: Duration = Duration::from_secs(30);

/// A document's format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Markdown,
    Text,
    Pdf,
}

impl Format {
    pub fn as_str(self) -> &'static str {
        match self {
            Format::Markdown => "markdown",
            Format::Text => "text",
            Format::Pdf => "pdf",
        }
    }

    /// From a `Content-Type` (parameters ignored), else the name's extension, else the
    /// bytes (`%PDF-`).
    pub fn detect(content_type: Option<&str>, name: &str, bytes: &[u8]) -> Option<Format> {
        let media = content_type.and_then(|c| c.split(';').next()).map(|m| m.trim().to_lowercase());
        match media.as_deref() {
            Some("application/pdf") => return Some(Format::Pdf),
            Some("text/markdown" | "text/x-markdown") => return Some(Format::Markdown),
            Some("text/plain") => return Some(Format::Text),
            _ => {}
        }
        let lower = name.to_lowercase();
        if lower.ends_with(".pdf") {
            Some(Format::Pdf)
        } else if lower.ends_with(".md") || lower.ends_with(".markdown") {
            Some(Format::Markdown)
        } else if lower.ends_with(".txt") {
            Some(Format::Text)
        } else if bytes.starts_with(b"%PDF-") {
            Some(Format::Pdf)
        } else {
            None
        }
    }
}

/// Why a document was refused, in an operator's words.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DocumentError {
    #[error("the document is empty")]
    Empty,
    #[error("a document is at most {} MiB", MAX_BYTES / 1024 / 1024)]
    TooLarge,
    #[error("send Markdown (text/markdown), plain text (text/plain) or a PDF (application/pdf)")]
    Format,
    #[error("the text is not UTF-8")]
    NotUtf8,
    #[error("the PDF could not be read: {0}")]
    Pdf(String),
    #[error("the PDF has no text to read (a scan? kitt does not read images)")]
    NoText,
}

/// The text of a Markdown or plain-text document: UTF-8, without NULs or a byte-order mark,
/// line ends made `\n`, at most [`MAX_CHARS`].
pub fn text_of(bytes: &[u8]) -> Result<String, DocumentError> {
    let text = std::str::from_utf8(bytes).map_err(|_| DocumentError::NotUtf8)?;
    Ok(clean(text))
}

fn clean(text: &str) -> String {
    let text =
        text.trim_start_matches('\u{feff}').replace("\r\n", "\n").replace(['\r', '\0'], "\n");
    let text: String = text.chars().take(MAX_CHARS).collect();
    text.trim().to_owned()
}

/// A document's text by its format.
pub async fn read(format: Format, bytes: Vec<u8>) -> Result<String, DocumentError> {
    if bytes.is_empty() {
        return Err(DocumentError::Empty);
    }
    if bytes.len() > MAX_BYTES {
        return Err(DocumentError::TooLarge);
    }
    let text = match format {
        Format::Markdown | Format::Text => text_of(&bytes)?,
        Format::Pdf => {
            let task = tokio::task::spawn_blocking(move || {
                pdf_extract::extract_text_from_mem(&bytes).map_err(|e| e.to_string())
            });
            match tokio::time::timeout(PDF_TIME, task).await {
                Ok(Ok(Ok(text))) => clean(&text),
                Ok(Ok(Err(error))) => return Err(DocumentError::Pdf(error)),
                Ok(Err(_panicked)) => {
                    return Err(DocumentError::Pdf("it is malformed".into()));
                }
                Err(_) => return Err(DocumentError::Pdf("it took too long".into())),
            }
        }
    };
    if text.is_empty() {
        return Err(match format {
            Format::Pdf => DocumentError::NoText,
            _ => DocumentError::Empty,
        });
    }
    Ok(text)
}

/// A one-page PDF of `lines` in Helvetica (no parentheses or backslashes in them), written
/// out by hand with its offsets: the demo's nozzle guide, and what the tests upload.
pub fn minimal_pdf(lines: &[&str]) -> Vec<u8> {
    let mut stream = String::from("BT /F1 12 Tf 72 720 Td 16 TL");
    for line in lines {
        let line: String = line.chars().filter(|c| !matches!(c, '(' | ')' | '\\')).collect();
        stream.push_str(&format!(" ({line}) Tj T*"));
    }
    stream.push_str(" ET");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R \
         /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!("<< /Length {} >>\nstream\n{stream}\nendstream", stream.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut out = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (n, object) in objects.iter().enumerate() {
        offsets.push(out.len());
        out.extend_from_slice(format!("{} 0 obj\n{object}\nendobj\n", n + 1).as_bytes());
    }
    let xref = out.len();
    let count = objects.len() + 1;
    out.extend_from_slice(format!("xref\n0 {count}\n0000000000 65535 f \n").as_bytes());
    for offset in offsets {
        out.extend_from_slice(format!("{offset:010} 00000 n \n").as_bytes());
    }
    out.extend_from_slice(
        format!("trailer\n<< /Size {count} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n").as_bytes(),
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn text_markdown_and_pdf_are_read_and_garbage_is_refused() {
        assert_eq!(
            read(Format::Markdown, "\u{feff}# Dryer\r\n\r\nPETG: 65 °C, 4 h\0".into())
                .await
                .unwrap(),
            "# Dryer\n\nPETG: 65 °C, 4 h"
        );
        let pdf =
            read(Format::Pdf, minimal_pdf(&["Dry PETG at 65 C", "for 4 hours"])).await.unwrap();
        assert!(pdf.contains("Dry PETG at 65 C"), "{pdf:?}");
        assert!(pdf.contains("for 4 hours"), "{pdf:?}");
        assert_eq!(read(Format::Text, vec![0xff, 0xfe, 0x00]).await, Err(DocumentError::NotUtf8));
        assert_eq!(read(Format::Text, Vec::new()).await, Err(DocumentError::Empty));
        assert_eq!(read(Format::Text, b" \n ".to_vec()).await, Err(DocumentError::Empty));
        // Hostile PDFs: not a PDF at all, cut short, a body of garbage.
        let truncated = minimal_pdf(&["x"])[..60].to_vec();
        for bad in [b"%PDF-1.4\ngarbage".to_vec(), truncated, b"%PDF-".repeat(1000)] {
            assert!(
                matches!(
                    read(Format::Pdf, bad).await,
                    Err(DocumentError::Pdf(_) | DocumentError::NoText)
                ),
                "refused, not a crash"
            );
        }
        assert_eq!(
            read(Format::Text, vec![b'a'; MAX_BYTES + 1]).await,
            Err(DocumentError::TooLarge)
        );
    }

    #[test]
    fn the_format_comes_from_the_type_the_name_or_the_bytes() {
        assert_eq!(Format::detect(Some("application/pdf"), "x", b""), Some(Format::Pdf));
        assert_eq!(
            Format::detect(Some("text/markdown; charset=utf-8"), "x", b""),
            Some(Format::Markdown)
        );
        assert_eq!(Format::detect(None, "Manual.PDF", b""), Some(Format::Pdf));
        assert_eq!(
            Format::detect(Some("application/octet-stream"), "notes.md", b""),
            Some(Format::Markdown)
        );
        assert_eq!(Format::detect(None, "blob", b"%PDF-1.7"), Some(Format::Pdf));
        assert_eq!(Format::detect(Some("image/png"), "photo.png", b"\x89PNG"), None);
    }
}
