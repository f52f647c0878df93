//! `--video file:PATH.y4m`: a looping YUV4MPEG2 file as a video source, the way browsers
//! offer a fake capture file. Read with the `y4m` crate; 8-bit 4:2:0 files only (what
//! `ffmpeg -pix_fmt yuv420p out.y4m` writes), which are already the encoder's I420.

use std::fs::File;
use std::io::BufReader;
use std::path::{Path, PathBuf};

use super::error::DeviceError;
use super::frame::VideoFrame;

/// Largest frame side accepted from a file (the encoder's own limit is larger; this
/// keeps a hostile header from asking for gigabytes).
const MAX_SIDE: usize = 4096;

/// A y4m file played from the start again each time it ends.
pub struct Y4mFile {
    path: PathBuf,
    decoder: y4m::Decoder<BufReader<File>>,
    width: u32,
    height: u32,
}

impl std::fmt::Debug for Y4mFile {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Y4mFile")
            .field("path", &self.path)
            .field("width", &self.width)
            .field("height", &self.height)
            .finish()
    }
}

impl Y4mFile {
    /// Opens `path` and checks its header: 8-bit 4:2:0, even sides up to 4096.
    pub fn open(path: &Path) -> Result<Self, DeviceError> {
        let decoder = open_decoder(path)?;
        let (width, height) = (decoder.get_width(), decoder.get_height());
        let fits = |side: usize| side > 0 && side <= MAX_SIDE && side.is_multiple_of(2);
        if !fits(width) || !fits(height) {
            return Err(DeviceError::Format(format!(
                "{}: a {width}x{height} video; sides must be even and at most {MAX_SIDE}",
                path.display()
            )));
        }
        if !matches!(
            decoder.get_colorspace(),
            y4m::Colorspace::C420
                | y4m::Colorspace::C420jpeg
                | y4m::Colorspace::C420paldv
                | y4m::Colorspace::C420mpeg2
        ) {
            return Err(DeviceError::Format(format!(
                "{}: colour space {:?}; only 8-bit 4:2:0 is read (ffmpeg -pix_fmt yuv420p)",
                path.display(),
                decoder.get_colorspace()
            )));
        }
        Ok(Self {
            path: path.to_owned(),
            decoder,
            width: width as u32,
            height: height as u32,
        })
    }

    /// The next frame; after the last one, the first again. Fails when the file went
    /// away or holds no whole frame.
    pub fn next_frame(&mut self) -> Result<VideoFrame, DeviceError> {
        match self.read() {
            Err(y4m::Error::EOF) => {
                let reopened = Self::open(&self.path)?;
                if (reopened.width, reopened.height) != (self.width, self.height) {
                    return Err(self.error("the file changed size", ""));
                }
                *self = reopened;
                self.read().map_err(|error| match error {
                    y4m::Error::EOF => self.error("the file holds no whole frame", ""),
                    other => self.error("read", &other.to_string()),
                })
            }
            other => other.map_err(|error| self.error("read", &error.to_string())),
        }
    }

    fn read(&mut self) -> Result<VideoFrame, y4m::Error> {
        let frame = self.decoder.read_frame()?;
        VideoFrame::new(
            self.width,
            self.height,
            frame.get_y_plane().to_vec(),
            frame.get_u_plane().to_vec(),
            frame.get_v_plane().to_vec(),
        )
        .map_err(|_| y4m::Error::BadInput)
    }

    fn error(&self, op: &str, message: &str) -> DeviceError {
        DeviceError::Format(
            format!("{}: {op} {message}", self.path.display())
                .trim_end()
                .to_owned(),
        )
    }
}

fn open_decoder(path: &Path) -> Result<y4m::Decoder<BufReader<File>>, DeviceError> {
    let file = File::open(path).map_err(|error| {
        DeviceError::Format(format!(
            "cannot open the video file {}: {error}",
            path.display()
        ))
    })?;
    y4m::decode(BufReader::new(file)).map_err(|error| {
        DeviceError::Format(format!("{} is not a y4m video: {error}", path.display()))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::media::synthetic::{Stamp, SyntheticVideo, read_stamp};

    /// Writes `frames` stamped synthetic frames of 320x240 to a y4m file.
    fn write_stamped(path: &Path, frames: u32) {
        let source = SyntheticVideo::new(320, 240).unwrap();
        let file = File::create(path).unwrap();
        let mut encoder = y4m::encode(320, 240, y4m::Ratio::new(30, 1))
            .with_colorspace(y4m::Colorspace::C420jpeg)
            .write_header(file)
            .unwrap();
        for seq in 0..frames {
            let frame = source.render(Stamp {
                seq,
                capture_micros: 1,
            });
            encoder
                .write_frame(&y4m::Frame::new([&frame.y, &frame.u, &frame.v], None))
                .unwrap();
        }
    }

    #[test]
    fn loops_over_the_frames_of_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("three.y4m");
        write_stamped(&path, 3);
        let mut file = Y4mFile::open(&path).unwrap();
        let seqs: Vec<u32> = (0..7)
            .map(|_| read_stamp(&file.next_frame().unwrap()).unwrap().seq)
            .collect();
        assert_eq!(seqs, [0, 1, 2, 0, 1, 2, 0]);
    }

    #[test]
    fn a_missing_or_foreign_file_is_a_clear_error() {
        let dir = tempfile::tempdir().unwrap();
        let missing = Y4mFile::open(&dir.path().join("none.y4m")).unwrap_err();
        assert!(
            missing.to_string().contains("cannot open the video file"),
            "{missing}"
        );
        let text = dir.path().join("text.y4m");
        std::fs::write(&text, "hello").unwrap();
        let foreign = Y4mFile::open(&text).unwrap_err();
        assert!(
            foreign.to_string().contains("is not a y4m video"),
            "{foreign}"
        );
    }

    #[test]
    fn a_file_that_vanishes_fails_at_its_end() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gone.y4m");
        write_stamped(&path, 2);
        let mut file = Y4mFile::open(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert!(file.next_frame().is_ok());
        assert!(file.next_frame().is_ok());
        assert!(file.next_frame().is_err());
    }
}
