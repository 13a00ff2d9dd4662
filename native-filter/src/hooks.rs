//! The event hooks Envoy calls (`envoy_dynamic_module_on_*`), each a thin shell: find the
//! module's object behind the pointer, call it, map its answer to the ABI's status, and catch
//! a panic so that it fails one stream instead of aborting Envoy.

use std::ffi::{c_char, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::ffi::{self, ConfigPtr, EnvoyBuffer, FilterPtr, HeaderPair, Stream};
use crate::shared::Host;
use crate::{records, Action, Filter, FilterConfig};
use switchyard_core::exchange::Shared as _;

/// The ABI version this module was written against (Envoy warns, and still loads it, when its
/// own differs).
static ABI_VERSION: &[u8] = b"v0.2.0\0";

/// Runs `f`, turning a panic into `fallback` (and a log line).
fn guard<R>(what: &str, fallback: R, f: impl FnOnce() -> R) -> R {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(r) => r,
        Err(_) => {
            ffi::log(ffi::LOG_ERROR, &format!("switchyard: panic in {what}"));
            fallback
        }
    }
}

/// # Safety
/// `ptr` must be a filter this module created and not yet destroyed.
unsafe fn filter<'a>(ptr: *const c_void) -> &'a mut Filter {
    // SAFETY: the caller's promise; Envoy calls one stream's hooks on one thread, one at a
    // time, so the exclusive borrow is unique.
    unsafe { &mut *(ptr as *mut Filter) }
}

/// Runs one stream hook. A panic marks the filter broken, so that the rest of the stream
/// passes it untouched; in a request hook (`refuse`: the status that stops the request) the
/// request is first answered with a gateway error, so that it never goes on unchecked.
fn stream_hook(
    what: &str,
    envoy: FilterPtr,
    module: *const c_void,
    pass: u32,
    refuse: Option<u32>,
    f: impl FnOnce(&mut Filter) -> u32,
) -> u32 {
    // SAFETY: Envoy hands back the pointer `on_http_filter_new` returned, until destroy.
    let state = unsafe { filter(module) };
    if matches!(state, Filter::Broken) {
        return pass;
    }
    let result = catch_unwind(AssertUnwindSafe(|| f(&mut *state)));
    result.unwrap_or_else(|_| {
        ffi::log(ffi::LOG_ERROR, &format!("switchyard: panic in {what}"));
        *state = Filter::Broken;
        match refuse {
            Some(stop) => {
                let _ = catch_unwind(|| internal_error(Stream(envoy)));
                stop
            }
            None => pass,
        }
    })
}

/// A 500 in the client's API's shape (Anthropic's for `/v1/messages`, else OpenAI's).
fn internal_error(stream: Stream) {
    let anthropic = stream
        .header(ffi::HeaderMap::Request, ":path")
        .is_some_and(|p| p.starts_with(b"/v1/messages"));
    let body: &[u8] = if anthropic {
        br#"{"type":"error","error":{"type":"api_error","message":"The gateway failed on this request."}}"#
    } else {
        br#"{"error":{"message":"The gateway failed on this request.","type":"server_error","param":null,"code":"internal_error"}}"#
    };
    stream.send_response(
        500,
        &[("content-type", "application/json")],
        body,
        switchyard_core::config::LOCAL_REPLY_DETAILS,
    );
}

/// Headers status: continue, stop iteration.
fn headers_status(action: Action) -> u32 {
    match action {
        Action::Continue => 0,
        Action::Pause | Action::Replied => 1,
    }
}

/// Body status: continue, stop and buffer, stop without buffering.
fn body_status(action: Action) -> u32 {
    match action {
        Action::Continue => 0,
        Action::Pause => 1,
        Action::Replied => 3,
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_program_init() -> *const c_char {
    ABI_VERSION.as_ptr().cast()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_new(
    config: ConfigPtr,
    name: EnvoyBuffer,
    bytes: EnvoyBuffer,
) -> *const c_void {
    guard("configuration", std::ptr::null(), || {
        // SAFETY: both buffers are Envoy's, valid for this hook.
        let (name, bytes) = unsafe { (ffi::envoy_bytes(name), ffi::envoy_bytes(bytes)) };
        match FilterConfig::new(ffi::Config(config), name, bytes) {
            Some(c) => {
                let c = Box::new(c);
                crate::add_ticker(&c);
                Box::into_raw(c).cast_const().cast()
            }
            None => std::ptr::null(),
        }
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_destroy(config: *const c_void) {
    guard("configuration's end", (), || {
        // SAFETY: the pointer `config_new` returned, destroyed once.
        let config = unsafe { Box::from_raw(config as *mut FilterConfig) };
        crate::remove_ticker(&config);
        records::config_gone(config.envoy.0 as usize, Host.now_ns() / 1_000_000);
        crate::lease::config_gone(config.envoy.0 as usize);
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_scheduled(
    _envoy: ConfigPtr,
    config: *const c_void,
    _event: u64,
) {
    guard("tick", (), || {
        // SAFETY: the pointer `config_new` returned, live while its scheduler is.
        let config = unsafe { &*(config as *const FilterConfig) };
        config.tick();
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_config_http_callout_done(
    envoy: ConfigPtr,
    _config: *const c_void,
    id: u64,
    result: u32,
    headers: *const HeaderPair,
    headers_size: usize,
    body: *const EnvoyBuffer,
    body_size: usize,
) {
    guard("callout answer", (), || {
        // SAFETY: Envoy's answer, valid for this hook.
        let (ok, body) = unsafe { ffi::callout_answer(headers, headers_size, body, body_size) };
        let answered = result == 0;
        let config = envoy as usize;
        if !crate::lease::returned(config, id, crate::lease::grant(answered, ok, &body).ok()) {
            records::answered(config, id, answered && ok, Host.now_ns() / 1_000_000);
        }
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_new(
    _name: EnvoyBuffer,
    _config: EnvoyBuffer,
) -> *const c_void {
    // No per-route configuration: refused.
    std::ptr::null()
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_per_route_config_destroy(
    _config: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_new(
    config: *const c_void,
    _filter: FilterPtr,
) -> *const c_void {
    guard("new stream", std::ptr::null(), || {
        // SAFETY: the pointer `config_new` returned; Envoy keeps it alive while its filters are.
        let config = unsafe { &*(config as *const FilterConfig) };
        Box::into_raw(Box::new(config.new_filter()))
            .cast_const()
            .cast()
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_headers(
    envoy: FilterPtr,
    module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    stream_hook("request headers", envoy, module, 0, Some(1), |f| {
        let stream = Stream(envoy);
        headers_status(match f {
            Filter::Down(r) => r.request_headers(stream, end_of_stream),
            Filter::Up(u) => u.request_headers(stream),
            Filter::Broken => Action::Continue,
        })
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_body(
    envoy: FilterPtr,
    module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    stream_hook("request body", envoy, module, 0, Some(3), |f| {
        let stream = Stream(envoy);
        body_status(match f {
            Filter::Down(r) => r.request_body(stream, end_of_stream),
            Filter::Up(u) => u.request_body(stream, end_of_stream),
            Filter::Broken => Action::Continue,
        })
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_request_trailers(
    envoy: FilterPtr,
    module: *const c_void,
) -> u32 {
    stream_hook("request trailers", envoy, module, 0, Some(1), |f| {
        let stream = Stream(envoy);
        let action = match f {
            Filter::Down(r) => r.request_trailers(stream),
            Filter::Up(u) => u.request_trailers(stream),
            Filter::Broken => Action::Continue,
        };
        u32::from(action != Action::Continue)
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_headers(
    envoy: FilterPtr,
    module: *const c_void,
    _end_of_stream: bool,
) -> u32 {
    stream_hook("response headers", envoy, module, 0, None, |f| {
        let stream = Stream(envoy);
        headers_status(match f {
            Filter::Down(r) => r.response_headers(stream),
            Filter::Up(u) => u.response_headers(stream),
            Filter::Broken => Action::Continue,
        })
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_body(
    envoy: FilterPtr,
    module: *const c_void,
    end_of_stream: bool,
) -> u32 {
    stream_hook("response body", envoy, module, 0, None, |f| {
        let stream = Stream(envoy);
        body_status(match f {
            Filter::Down(r) => r.response_body(stream, end_of_stream),
            Filter::Up(_) | Filter::Broken => Action::Continue,
        })
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_response_trailers(
    _envoy: FilterPtr,
    _module: *const c_void,
) -> u32 {
    0
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_stream_complete(
    envoy: FilterPtr,
    module: *const c_void,
) {
    stream_hook("stream end", envoy, module, 0, None, |f| {
        if let Filter::Down(r) = f {
            r.complete(Stream(envoy));
        }
        0
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_destroy(module: *const c_void) {
    guard("stream's end", (), || {
        // SAFETY: the pointer `on_http_filter_new` returned, destroyed once.
        drop(unsafe { Box::from_raw(module as *mut Filter) });
    });
}

// The stream's callout answer (its lease ask); then hooks Envoy requires but the filter does
// not use: per-stream streams (it opens none), scheduled stream events, watermarks.

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_callout_done(
    envoy: FilterPtr,
    module: *const c_void,
    _id: u64,
    result: u32,
    headers: *const HeaderPair,
    headers_size: usize,
    body: *const EnvoyBuffer,
    body_size: usize,
) {
    // The stream's one callout: its key's lease ask.
    stream_hook("lease answer", envoy, module, 0, Some(0), |f| {
        if let Filter::Down(r) = f {
            // SAFETY: Envoy's answer, valid for this hook.
            let (ok, body) = unsafe { ffi::callout_answer(headers, headers_size, body, body_size) };
            r.lease_answered(Stream(envoy), result == 0, ok, &body);
        }
        0
    });
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_headers(
    _envoy: FilterPtr,
    _module: *const c_void,
    _stream: u64,
    _headers: *const HeaderPair,
    _headers_size: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_data(
    _envoy: FilterPtr,
    _module: *const c_void,
    _stream: u64,
    _data: *const EnvoyBuffer,
    _data_count: usize,
    _end_stream: bool,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_trailers(
    _envoy: FilterPtr,
    _module: *const c_void,
    _stream: u64,
    _trailers: *const HeaderPair,
    _trailers_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_complete(
    _envoy: FilterPtr,
    _module: *const c_void,
    _stream: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_http_stream_reset(
    _envoy: FilterPtr,
    _module: *const c_void,
    _stream: u64,
    _reason: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_scheduled(
    _envoy: FilterPtr,
    _module: *const c_void,
    _event: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_above_write_buffer_high_watermark(
    _envoy: FilterPtr,
    _module: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_http_filter_downstream_below_write_buffer_low_watermark(
    _envoy: FilterPtr,
    _module: *const c_void,
) {
}

// The bootstrap extension (`envoy.bootstrap.dynamic_modules`, named
// `switchyard`): created once when Envoy starts, before any listener, it defines the
// process's counters (see `crate::metrics`). It has no other work.

/// Any non-null pointer: the extension keeps no state of its own.
const BOOTSTRAP: *const c_void = std::ptr::NonNull::<u8>::dangling().as_ptr().cast();

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_config_new(
    config: *mut c_void,
    _name: EnvoyBuffer,
    _bytes: EnvoyBuffer,
) -> *const c_void {
    guard("bootstrap extension", std::ptr::null(), || {
        crate::metrics::Metrics::define_for_process(ffi::Registry::of_bootstrap(config));
        ffi::bootstrap_ready(config);
        BOOTSTRAP
    })
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_config_destroy(
    _config: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_new(
    _config: *const c_void,
    _extension: *mut c_void,
) -> *const c_void {
    BOOTSTRAP
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_server_initialized(
    _extension: *mut c_void,
    _module: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_worker_thread_initialized(
    _extension: *mut c_void,
    _module: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_destroy(_module: *const c_void) {}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_config_scheduled(
    _envoy: *mut c_void,
    _config: *const c_void,
    _event: u64,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_http_callout_done(
    _envoy: *mut c_void,
    _config: *const c_void,
    _id: u64,
    _result: u32,
    _headers: *const HeaderPair,
    _headers_size: usize,
    _body: *const EnvoyBuffer,
    _body_size: usize,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_drain_started(
    _extension: *mut c_void,
    _module: *const c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_shutdown(
    _extension: *mut c_void,
    _module: *const c_void,
    completion: Option<unsafe extern "C" fn(*mut c_void)>,
    context: *mut c_void,
) {
    // Nothing to finish: Envoy may go on at once.
    if let Some(done) = completion {
        // SAFETY: Envoy's completion callback with the context it gave.
        unsafe { done(context) };
    }
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_timer_fired(
    _envoy: *mut c_void,
    _config: *const c_void,
    _timer: *mut c_void,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_file_changed(
    _envoy: *mut c_void,
    _config: *const c_void,
    _path: EnvoyBuffer,
    _events: u32,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_admin_request(
    _envoy: *mut c_void,
    _config: *const c_void,
    _method: EnvoyBuffer,
    _path: EnvoyBuffer,
    _body: EnvoyBuffer,
) -> u32 {
    404
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_cluster_add_or_update(
    _envoy: *mut c_void,
    _config: *const c_void,
    _name: EnvoyBuffer,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_cluster_removal(
    _envoy: *mut c_void,
    _config: *const c_void,
    _name: EnvoyBuffer,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_listener_add_or_update(
    _envoy: *mut c_void,
    _config: *const c_void,
    _name: EnvoyBuffer,
) {
}

#[no_mangle]
pub extern "C" fn envoy_dynamic_module_on_bootstrap_extension_listener_removal(
    _envoy: *mut c_void,
    _config: *const c_void,
    _name: EnvoyBuffer,
) {
}
