//! QR codes of resolution links, drawn on the server: SVG (the page) and PNG (printing).
//! Error correction level M; a quiet zone of four modules.

use qrcode::{Color, EcLevel, QrCode};

use crate::error::{Error, Result};

/// Pixels per module in the PNG.
const SCALE: usize = 8;
/// Modules of white border (the QR standard's quiet zone).
const QUIET: usize = 4;

fn code(link: &str) -> Result<QrCode> {
    QrCode::with_error_correction_level(link.as_bytes(), EcLevel::M)
        .map_err(|e| Error::invalid(format!("the link does not fit a QR code: {e}")))
}

/// The QR code of `link` as an SVG document.
pub fn svg(link: &str) -> Result<String> {
    Ok(code(link)?
        .render::<qrcode::render::svg::Color>()
        .quiet_zone(true)
        .min_dimensions(256, 256)
        .build())
}

/// The QR code of `link` as an 8-bit greyscale PNG, [`SCALE`] pixels per module.
pub fn png(link: &str) -> Result<Vec<u8>> {
    let code = code(link)?;
    let modules = code.width();
    let colors = code.to_colors();
    let side = (modules + 2 * QUIET) * SCALE;
    let mut pixels = vec![255u8; side * side];
    for (i, c) in colors.iter().enumerate() {
        if *c != Color::Dark {
            continue;
        }
        let (mx, my) = (i % modules + QUIET, i / modules + QUIET);
        for y in my * SCALE..(my + 1) * SCALE {
            pixels[y * side + mx * SCALE..y * side + (mx + 1) * SCALE].fill(0);
        }
    }
    let mut out = Vec::new();
    let mut encoder = png::Encoder::new(&mut out, side as u32, side as u32);
    encoder.set_color(png::ColorType::Grayscale);
    encoder.set_depth(png::BitDepth::Eight);
    let mut writer = encoder.write_header().map_err(Error::internal)?;
    writer.write_image_data(&pixels).map_err(Error::internal)?;
    writer.finish().map_err(Error::internal)?;
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn svg_and_png_encode_the_link() {
        let link = "https://id.example.cn/88.101.5/BAT-2024-000001";
        let svg = svg(link).unwrap();
        assert!(svg.contains("<svg") && svg.contains("<path"), "{svg}");
        let png = png(link).unwrap();
        assert_eq!(&png[1..4], b"PNG");
        // Too long for any QR code.
        assert!(png_too_long().is_err());
    }

    fn png_too_long() -> Result<Vec<u8>> {
        png(&"x".repeat(8000))
    }
}
