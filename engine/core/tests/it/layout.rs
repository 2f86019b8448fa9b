//! The core's layout stays readable: no source file over 800 lines, so that a service's
//! rules stay one module each rather than growing back into one long match.

use crate::purity::{core_dir, rust_files};

const SOURCE_LINES_MAX: usize = 800;

#[test]
fn no_core_source_file_is_over_800_lines() {
    let src = core_dir().join("src");
    let too_long: Vec<String> = rust_files(&src)
        .iter()
        .filter_map(|path| {
            let n_lines = std::fs::read_to_string(path).unwrap().lines().count();
            (n_lines > SOURCE_LINES_MAX).then(|| {
                format!(
                    "{}: {n_lines} lines",
                    path.strip_prefix(&src).unwrap_or(path).display()
                )
            })
        })
        .collect();
    assert!(
        too_long.is_empty(),
        "split these core files (at most {SOURCE_LINES_MAX} lines each): {too_long:?}"
    );
}
