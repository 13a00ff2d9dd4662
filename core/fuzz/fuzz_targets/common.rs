//! What every translator target does: an arbitrary request, or a fixed request followed by an
//! arbitrary provider answer (JSON or event stream, success or error) cut at an arbitrary point.

use switchyard_core::translate::Translator;

pub fn drive(data: &[u8], mut t: Box<dyn Translator>, request: &[u8], error_status: u32) {
    let Some((&mode, rest)) = data.split_first() else {
        return;
    };
    if mode & 1 == 0 {
        let _ = t.request_body(rest, "upstream-model");
        return;
    }
    let _ = t.request_body(request, "upstream-model");
    let status = if mode & 2 == 0 { 200 } else { error_status };
    let _ = t.response_headers(status, mode & 4 == 0);
    let cut = usize::from(mode >> 3).min(rest.len());
    let (a, b) = rest.split_at(cut);
    let _ = t.response_body(a, false);
    let _ = t.response_body(b, true);
    let _ = (t.usage(), t.completed());
}
