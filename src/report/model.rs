//! `deepinit model`'s report of the files it wrote.

use crate::model::write::Report;

/// The files `deepinit model` wrote or kept, and its rate.
pub(crate) fn render(r: &Report) -> String {
    let mut s = String::new();
    for f in &r.files {
        s += &format!(
            "{} {} ({:.1} MB{})\n",
            if f.written {
                "wrote"
            } else {
                "kept (identical)"
            },
            f.path.display(),
            f.bytes as f64 / 1e6,
            if f.tensors > 0 {
                format!(", {} tensors", f.tensors)
            } else {
                String::new()
            }
        );
    }
    s += &format!(
        "{:.1} MB in {:.2} s: {:.0} MB/s\n",
        r.bytes as f64 / 1e6,
        r.seconds,
        r.mb_per_s
    );
    s
}
