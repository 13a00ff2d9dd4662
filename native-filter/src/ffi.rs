//! Envoy's dynamic module ABI (Envoy 1.40, `source/extensions/dynamic_modules/abi/abi.h`): the
//! few callbacks the filter calls, declared by hand from the header, and thin wrappers that
//! keep the raw pointers in this file. Envoy exports the callbacks from its own binary; the
//! module resolves them when Envoy loads it.
//!
//! Every pointer Envoy hands over is valid for the duration of the event hook that gave it
//! (headers and bodies until the hook returns or the map is written), and everything the
//! module passes is copied by Envoy before the callback returns.

use std::ffi::c_void;

/// `envoy_dynamic_module_type_envoy_buffer`: bytes Envoy owns.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct EnvoyBuffer {
    pub ptr: *const u8,
    pub len: usize,
}

impl EnvoyBuffer {
    const EMPTY: EnvoyBuffer = EnvoyBuffer {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// The bytes, valid until the hook returns (see the module's note).
    ///
    /// # Safety
    /// `ptr` must be null or point to `len` readable bytes for `'a`.
    unsafe fn bytes<'a>(self) -> &'a [u8] {
        if self.ptr.is_null() || self.len == 0 {
            &[]
        } else {
            // SAFETY: the caller's promise.
            unsafe { std::slice::from_raw_parts(self.ptr, self.len) }
        }
    }
}

/// `envoy_dynamic_module_type_module_buffer`: bytes the module owns, copied by Envoy.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct ModuleBuffer {
    pub ptr: *const u8,
    pub len: usize,
}

impl ModuleBuffer {
    pub fn of(bytes: &[u8]) -> ModuleBuffer {
        ModuleBuffer {
            ptr: bytes.as_ptr(),
            len: bytes.len(),
        }
    }

    const NULL: ModuleBuffer = ModuleBuffer {
        ptr: std::ptr::null(),
        len: 0,
    };
}

/// `envoy_dynamic_module_type_envoy_http_header` / `..._module_http_header`: one pair.
#[repr(C)]
#[derive(Clone, Copy)]
pub struct HeaderPair {
    pub key_ptr: *const u8,
    pub key_len: usize,
    pub value_ptr: *const u8,
    pub value_len: usize,
}

impl HeaderPair {
    pub fn of(name: &[u8], value: &[u8]) -> HeaderPair {
        HeaderPair {
            key_ptr: name.as_ptr(),
            key_len: name.len(),
            value_ptr: value.as_ptr(),
            value_len: value.len(),
        }
    }

    const EMPTY: HeaderPair = HeaderPair {
        key_ptr: std::ptr::null(),
        key_len: 0,
        value_ptr: std::ptr::null(),
        value_len: 0,
    };
}

/// `envoy_dynamic_module_type_http_header_type`.
#[repr(u32)]
#[derive(Clone, Copy)]
pub enum HeaderMap {
    Request = 0,
    Response = 2,
}

/// `envoy_dynamic_module_type_http_body_type` (the buffered response body, 3, is not used).
#[repr(u32)]
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Body {
    ReceivedRequest = 0,
    BufferedRequest = 1,
    ReceivedResponse = 2,
}

/// `envoy_dynamic_module_type_metadata_source_Host`.
const METADATA_HOST: u32 = 3;
/// `envoy_dynamic_module_type_attribute_id_ResponseCode` and `..._ResponseCodeDetails`.
const ATTRIBUTE_RESPONSE_CODE: u32 = 15;
const ATTRIBUTE_RESPONSE_CODE_DETAILS: u32 = 16;
/// `envoy_dynamic_module_type_log_level`.
pub const LOG_INFO: u32 = 2;
pub const LOG_WARN: u32 = 3;
pub const LOG_ERROR: u32 = 4;
/// `envoy_dynamic_module_type_metrics_result_Success`.
const METRICS_OK: u32 = 0;
/// `envoy_dynamic_module_type_http_callout_init_result_Success`.
const CALLOUT_OK: u32 = 0;

/// `envoy_dynamic_module_type_http_filter_envoy_ptr`: one stream's filter in Envoy.
pub type FilterPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_envoy_ptr`.
pub type ConfigPtr = *mut c_void;
/// `envoy_dynamic_module_type_http_filter_config_scheduler_module_ptr`.
pub type SchedulerPtr = *mut c_void;

extern "C" {
    fn envoy_dynamic_module_callback_log(level: u32, message: ModuleBuffer);
    fn envoy_dynamic_module_callback_http_get_headers_size(filter: FilterPtr, map: u32) -> usize;
    fn envoy_dynamic_module_callback_http_get_headers(
        filter: FilterPtr,
        map: u32,
        out: *mut HeaderPair,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_header(
        filter: FilterPtr,
        map: u32,
        key: ModuleBuffer,
        out: *mut EnvoyBuffer,
        index: usize,
        count: *mut usize,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_header(
        filter: FilterPtr,
        map: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_add_header(
        filter: FilterPtr,
        map: u32,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_clear_route_cache(filter: FilterPtr);
    fn envoy_dynamic_module_callback_http_filter_continue_decoding(filter: FilterPtr);
    fn envoy_dynamic_module_callback_http_filter_http_callout(
        filter: FilterPtr,
        id: *mut u64,
        cluster: ModuleBuffer,
        headers: *mut HeaderPair,
        count: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_send_response(
        filter: FilterPtr,
        status: u32,
        headers: *mut HeaderPair,
        count: usize,
        body: ModuleBuffer,
        details: ModuleBuffer,
    );
    fn envoy_dynamic_module_callback_http_get_body_chunks_size(
        filter: FilterPtr,
        body: u32,
    ) -> usize;
    fn envoy_dynamic_module_callback_http_get_body_chunks(
        filter: FilterPtr,
        body: u32,
        out: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_body_size(filter: FilterPtr, body: u32) -> usize;
    fn envoy_dynamic_module_callback_http_append_body(
        filter: FilterPtr,
        body: u32,
        data: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_drain_body(
        filter: FilterPtr,
        body: u32,
        bytes: usize,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_set_filter_state_bytes(
        filter: FilterPtr,
        key: ModuleBuffer,
        value: ModuleBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_filter_state_bytes(
        filter: FilterPtr,
        key: ModuleBuffer,
        out: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_get_metadata_string(
        filter: FilterPtr,
        source: u32,
        namespace: ModuleBuffer,
        key: ModuleBuffer,
        out: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_string(
        filter: FilterPtr,
        id: u32,
        out: *mut EnvoyBuffer,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_get_attribute_int(
        filter: FilterPtr,
        id: u32,
        out: *mut u64,
    ) -> bool;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_new(
        config: ConfigPtr,
    ) -> SchedulerPtr;
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_commit(
        scheduler: SchedulerPtr,
        event: u64,
    );
    fn envoy_dynamic_module_callback_http_filter_config_scheduler_delete(scheduler: SchedulerPtr);
    fn envoy_dynamic_module_callback_http_filter_config_http_callout(
        config: ConfigPtr,
        id: *mut u64,
        cluster: ModuleBuffer,
        headers: *mut HeaderPair,
        count: usize,
        body: ModuleBuffer,
        timeout_ms: u64,
    ) -> u32;
}

/// The metric callbacks of one owner of metrics (a filter configuration, or the bootstrap
/// extension), all of one shape.
type Define =
    unsafe extern "C" fn(*mut c_void, ModuleBuffer, *mut ModuleBuffer, usize, *mut usize) -> u32;
type Record = unsafe extern "C" fn(*mut c_void, usize, *mut ModuleBuffer, usize, u64) -> u32;

extern "C" {
    fn envoy_dynamic_module_callback_http_filter_config_define_counter(
        owner: *mut c_void,
        name: ModuleBuffer,
        labels: *mut ModuleBuffer,
        labels_len: usize,
        id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_define_histogram(
        owner: *mut c_void,
        name: ModuleBuffer,
        labels: *mut ModuleBuffer,
        labels_len: usize,
        id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_increment_counter(
        owner: *mut c_void,
        id: usize,
        labels: *mut ModuleBuffer,
        labels_len: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_http_filter_config_record_histogram_value(
        owner: *mut c_void,
        id: usize,
        labels: *mut ModuleBuffer,
        labels_len: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_bootstrap_extension_config_define_counter(
        owner: *mut c_void,
        name: ModuleBuffer,
        labels: *mut ModuleBuffer,
        labels_len: usize,
        id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_bootstrap_extension_config_define_histogram(
        owner: *mut c_void,
        name: ModuleBuffer,
        labels: *mut ModuleBuffer,
        labels_len: usize,
        id: *mut usize,
    ) -> u32;
    fn envoy_dynamic_module_callback_bootstrap_extension_config_increment_counter(
        owner: *mut c_void,
        id: usize,
        labels: *mut ModuleBuffer,
        labels_len: usize,
        value: u64,
    ) -> u32;
    fn envoy_dynamic_module_callback_bootstrap_extension_config_record_histogram_value(
        owner: *mut c_void,
        id: usize,
        labels: *mut ModuleBuffer,
        labels_len: usize,
        value: u64,
    ) -> u32;
}

/// Where metrics are defined and recorded: the bootstrap extension's configuration (it lives
/// as long as Envoy) or a filter configuration's.
#[derive(Clone, Copy)]
pub struct Registry {
    owner: *mut c_void,
    define_counter: Define,
    define_histogram: Define,
    increment: Record,
    record: Record,
}

// SAFETY: Envoy's stats are safe to record from any thread; the owner outlives every use (the
// bootstrap extension lives as long as Envoy; a filter configuration as long as its filters).
unsafe impl Send for Registry {}
// SAFETY: as above.
unsafe impl Sync for Registry {}

impl Registry {
    pub fn of_filter_config(config: Config) -> Registry {
        Registry {
            owner: config.0,
            define_counter: envoy_dynamic_module_callback_http_filter_config_define_counter,
            define_histogram: envoy_dynamic_module_callback_http_filter_config_define_histogram,
            increment: envoy_dynamic_module_callback_http_filter_config_increment_counter,
            record: envoy_dynamic_module_callback_http_filter_config_record_histogram_value,
        }
    }

    pub fn of_bootstrap(owner: *mut c_void) -> Registry {
        Registry {
            owner,
            define_counter: envoy_dynamic_module_callback_bootstrap_extension_config_define_counter,
            define_histogram:
                envoy_dynamic_module_callback_bootstrap_extension_config_define_histogram,
            increment: envoy_dynamic_module_callback_bootstrap_extension_config_increment_counter,
            record: envoy_dynamic_module_callback_bootstrap_extension_config_record_histogram_value,
        }
    }

    fn define(self, define: Define, name: &str, labels: &[&str]) -> Option<usize> {
        let mut labels: Vec<ModuleBuffer> = labels
            .iter()
            .map(|l| ModuleBuffer::of(l.as_bytes()))
            .collect();
        let mut id = 0usize;
        // SAFETY: the owner is live and being created (Envoy allows definitions only then);
        // the buffers live for the call.
        let result = unsafe {
            define(
                self.owner,
                ModuleBuffer::of(name.as_bytes()),
                labels.as_mut_ptr(),
                labels.len(),
                &mut id,
            )
        };
        (result == METRICS_OK).then_some(id)
    }

    /// Defines a counter (only while its owner is being created).
    pub fn define_counter(self, name: &str) -> Option<usize> {
        self.define(self.define_counter, name, &[])
    }

    /// Defines a histogram with these label names (only while its owner is being created).
    pub fn define_histogram(self, name: &str, labels: &[&str]) -> Option<usize> {
        self.define(self.define_histogram, name, labels)
    }

    pub fn increment_counter(self, id: usize, value: u64) {
        // SAFETY: a live owner; no labels.
        unsafe { (self.increment)(self.owner, id, std::ptr::null_mut(), 0, value) };
    }

    /// Records a histogram sample; `labels` in the order the histogram was defined with.
    pub fn record_histogram(self, id: usize, labels: &[&str], value: u64) -> bool {
        let count = labels.len().min(4);
        let mut labels: [ModuleBuffer; 4] = std::array::from_fn(|i| {
            labels
                .get(i)
                .map_or(ModuleBuffer::NULL, |l| ModuleBuffer::of(l.as_bytes()))
        });
        // SAFETY: a live owner; the label buffers live for the call.
        let result = unsafe { (self.record)(self.owner, id, labels.as_mut_ptr(), count, value) };
        result == METRICS_OK
    }
}

extern "C" {
    fn envoy_dynamic_module_callback_bootstrap_extension_config_signal_init_complete(
        config: *mut c_void,
    );
}

/// Tells Envoy the bootstrap extension is ready (Envoy's start waits for it).
pub fn bootstrap_ready(config: *mut c_void) {
    // SAFETY: the bootstrap extension's configuration, live while its creation hook runs.
    unsafe { envoy_dynamic_module_callback_bootstrap_extension_config_signal_init_complete(config) }
}

/// Writes a line to Envoy's log (the `dynamic_modules` logger).
pub fn log(level: u32, message: &str) {
    // SAFETY: the message lives for the call; Envoy copies it.
    unsafe { envoy_dynamic_module_callback_log(level, ModuleBuffer::of(message.as_bytes())) }
}

/// One stream's filter in Envoy, valid from the filter's creation to its destruction.
#[derive(Clone, Copy)]
pub struct Stream(pub FilterPtr);

impl Stream {
    /// Calls `f` with every pair of a header map (Envoy's memory, no copy).
    pub fn with_headers<R>(self, map: HeaderMap, f: impl FnOnce(&[(&[u8], &[u8])]) -> R) -> R {
        // SAFETY: `self.0` is a live filter (the hooks receive it from Envoy); the array has
        // room for the count Envoy reported, and the pairs point into Envoy's header map,
        // untouched until this function returns.
        unsafe {
            let count = envoy_dynamic_module_callback_http_get_headers_size(self.0, map as u32);
            let mut raw = vec![HeaderPair::EMPTY; count];
            if count == 0
                || !envoy_dynamic_module_callback_http_get_headers(
                    self.0,
                    map as u32,
                    raw.as_mut_ptr(),
                )
            {
                return f(&[]);
            }
            let pairs: Vec<(&[u8], &[u8])> = header_pairs(raw.as_ptr(), raw.len()).collect();
            f(&pairs)
        }
    }

    /// The first value of one header, copied.
    pub fn header(self, map: HeaderMap, name: &str) -> Option<Vec<u8>> {
        let mut out = EnvoyBuffer::EMPTY;
        // SAFETY: a live filter; `out` is written by Envoy and read before the hook returns.
        unsafe {
            envoy_dynamic_module_callback_http_get_header(
                self.0,
                map as u32,
                ModuleBuffer::of(name.as_bytes()),
                &mut out,
                0,
                std::ptr::null_mut(),
            );
            (!out.ptr.is_null()).then(|| out.bytes().to_vec())
        }
    }

    /// Sets (or with `None` removes) every value of one header.
    pub fn set_header(self, map: HeaderMap, name: &str, value: Option<&[u8]>) -> bool {
        let value = value.map_or(ModuleBuffer::NULL, ModuleBuffer::of);
        // SAFETY: a live filter; both buffers live for the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_header(
                self.0,
                map as u32,
                ModuleBuffer::of(name.as_bytes()),
                value,
            )
        }
    }

    /// Makes Envoy choose the route again (after request headers it routes on changed).
    pub fn clear_route_cache(self) {
        // SAFETY: a live filter.
        unsafe { envoy_dynamic_module_callback_http_clear_route_cache(self.0) }
    }

    /// Lets a request the filter paused go on.
    pub fn continue_decoding(self) {
        // SAFETY: a live filter.
        unsafe { envoy_dynamic_module_callback_http_filter_continue_decoding(self.0) }
    }

    /// Adds one more value of a header.
    pub fn add_header(self, map: HeaderMap, name: &str, value: &[u8]) -> bool {
        // SAFETY: a live filter; both buffers live for the call.
        unsafe {
            envoy_dynamic_module_callback_http_add_header(
                self.0,
                map as u32,
                ModuleBuffer::of(name.as_bytes()),
                ModuleBuffer::of(value),
            )
        }
    }

    /// Answers the request itself.
    pub fn send_response(self, status: u32, headers: &[(&str, &str)], body: &[u8], details: &str) {
        let mut pairs: Vec<HeaderPair> = headers
            .iter()
            .map(|(k, v)| HeaderPair::of(k.as_bytes(), v.as_bytes()))
            .collect();
        // SAFETY: a live filter; every buffer lives for the call and Envoy copies them.
        unsafe {
            envoy_dynamic_module_callback_http_send_response(
                self.0,
                status,
                pairs.as_mut_ptr(),
                pairs.len(),
                ModuleBuffer::of(body),
                ModuleBuffer::of(details.as_bytes()),
            );
        }
    }

    /// Bytes of one body (0 when Envoy has none).
    pub fn body_size(self, body: Body) -> usize {
        // SAFETY: a live filter.
        unsafe { envoy_dynamic_module_callback_http_get_body_size(self.0, body as u32) }
    }

    /// Appends one body's bytes to `out`.
    pub fn read_body(self, body: Body, out: &mut Vec<u8>) {
        // SAFETY: a live filter; the array has room for the count Envoy reported and the
        // slices it fills point into Envoy's buffer, read before this function returns.
        unsafe {
            let count =
                envoy_dynamic_module_callback_http_get_body_chunks_size(self.0, body as u32);
            if count == 0 {
                return;
            }
            let mut chunks = vec![EnvoyBuffer::EMPTY; count];
            if envoy_dynamic_module_callback_http_get_body_chunks(
                self.0,
                body as u32,
                chunks.as_mut_ptr(),
            ) {
                for chunk in chunks {
                    out.extend_from_slice(chunk.bytes());
                }
            }
        }
    }

    /// Empties one body.
    pub fn drain_body(self, body: Body) {
        // SAFETY: a live filter; draining more than the body holds drains it all.
        unsafe {
            envoy_dynamic_module_callback_http_drain_body(self.0, body as u32, usize::MAX);
        }
    }

    /// Appends `data` to one body.
    pub fn append_body(self, body: Body, data: &[u8]) -> bool {
        // SAFETY: a live filter; `data` lives for the call and Envoy copies it.
        unsafe {
            envoy_dynamic_module_callback_http_append_body(
                self.0,
                body as u32,
                ModuleBuffer::of(data),
            )
        }
    }

    /// Sets a filter state value (a string Envoy's access log and other filters can read).
    pub fn set_filter_state(self, key: &str, value: &[u8]) -> bool {
        // SAFETY: a live filter; both buffers live for the call.
        unsafe {
            envoy_dynamic_module_callback_http_set_filter_state_bytes(
                self.0,
                ModuleBuffer::of(key.as_bytes()),
                ModuleBuffer::of(value),
            )
        }
    }

    /// A filter state value, copied.
    pub fn filter_state(self, key: &str) -> Option<Vec<u8>> {
        let mut out = EnvoyBuffer::EMPTY;
        // SAFETY: a live filter; `out` is read before the hook returns.
        unsafe {
            envoy_dynamic_module_callback_http_get_filter_state_bytes(
                self.0,
                ModuleBuffer::of(key.as_bytes()),
                &mut out,
            )
            .then(|| out.bytes().to_vec())
        }
    }

    /// A string of the upstream host's metadata (`namespace`.`key`), copied.
    pub fn host_metadata(self, namespace: &str, key: &str) -> Option<Vec<u8>> {
        let mut out = EnvoyBuffer::EMPTY;
        // SAFETY: a live filter; `out` is read before the hook returns.
        unsafe {
            envoy_dynamic_module_callback_http_get_metadata_string(
                self.0,
                METADATA_HOST,
                ModuleBuffer::of(namespace.as_bytes()),
                ModuleBuffer::of(key.as_bytes()),
                &mut out,
            )
            .then(|| out.bytes().to_vec())
        }
    }

    /// The response's code details (why Envoy answered, when it did).
    pub fn response_code_details(self) -> Option<Vec<u8>> {
        let mut out = EnvoyBuffer::EMPTY;
        // SAFETY: a live filter; `out` is read before the hook returns.
        unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_string(
                self.0,
                ATTRIBUTE_RESPONSE_CODE_DETAILS,
                &mut out,
            )
            .then(|| out.bytes().to_vec())
        }
    }

    /// The response code Envoy sent (0 when none).
    pub fn response_code(self) -> u64 {
        let mut code = 0u64;
        // SAFETY: a live filter; `code` is written by Envoy.
        unsafe {
            envoy_dynamic_module_callback_http_filter_get_attribute_int(
                self.0,
                ATTRIBUTE_RESPONSE_CODE,
                &mut code,
            );
        }
        code
    }
}

/// The filter configuration in Envoy, valid until its destroy hook.
#[derive(Clone, Copy)]
pub struct Config(pub ConfigPtr);

// SAFETY: Envoy's configuration object is shared by every worker; the callbacks made with it
// (metrics, the scheduler, callouts) are Envoy's to make thread-safe or are made on the main
// thread, as their ABI comments require.
unsafe impl Send for Config {}
// SAFETY: as above.
unsafe impl Sync for Config {}

impl Config {
    /// A scheduler that runs the configuration's scheduled hook on Envoy's main thread.
    pub fn scheduler(self) -> Scheduler {
        // SAFETY: a live configuration.
        Scheduler(unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_new(self.0) })
    }
}

/// A configuration's scheduler: commits may come from any thread.
pub struct Scheduler(SchedulerPtr);

// SAFETY: the ABI allows committing to a scheduler from any thread.
unsafe impl Send for Scheduler {}
// SAFETY: as above.
unsafe impl Sync for Scheduler {}

impl Scheduler {
    pub fn commit(&self, event: u64) {
        // SAFETY: the scheduler lives until dropped.
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_commit(self.0, event) }
    }
}

impl Drop for Scheduler {
    fn drop(&mut self) {
        // SAFETY: created by `scheduler_new`, deleted once.
        unsafe { envoy_dynamic_module_callback_http_filter_config_scheduler_delete(self.0) }
    }
}

/// The pairs of a callout's answer headers.
///
/// # Safety
/// `headers` must point to `count` pairs valid for `'a` (the hook's duration).
pub unsafe fn header_pairs<'a>(
    headers: *const HeaderPair,
    count: usize,
) -> impl Iterator<Item = (&'a [u8], &'a [u8])> {
    let pairs: &[HeaderPair] = if headers.is_null() {
        &[]
    } else {
        // SAFETY: the caller's promise.
        unsafe { std::slice::from_raw_parts(headers, count) }
    };
    pairs.iter().map(|p| {
        // SAFETY: each pair points into Envoy's answer, valid for the hook.
        unsafe {
            (
                EnvoyBuffer {
                    ptr: p.key_ptr,
                    len: p.key_len,
                }
                .bytes(),
                EnvoyBuffer {
                    ptr: p.value_ptr,
                    len: p.value_len,
                }
                .bytes(),
            )
        }
    })
}

/// Envoy's two callout callbacks (a stream's and the configuration's) have one signature.
pub type CalloutFn = unsafe extern "C" fn(
    *mut c_void,
    *mut u64,
    ModuleBuffer,
    *mut HeaderPair,
    usize,
    ModuleBuffer,
    u64,
) -> u32;

/// What sends HTTP requests through Envoy: a stream (on its worker thread; the answer comes to
/// the stream's callout hook) or the configuration (on the main thread; to the
/// configuration's callout hook).
pub trait Callouts: Copy {
    /// Envoy's callback that sends for it.
    const SEND: CalloutFn;

    /// The pointer Envoy knows it by.
    fn owner(self) -> *mut c_void;

    /// Sends an HTTP request to `cluster`; the answer comes under the returned id (`None`:
    /// Envoy did not take it).
    fn callout(
        self,
        cluster: &str,
        headers: &[(&str, &str)],
        body: &[u8],
        timeout_ms: u64,
    ) -> Option<u64> {
        // SAFETY: streams and configurations are live while their hooks run, each on the
        // thread its hooks run on.
        unsafe { callout(Self::SEND, self.owner(), cluster, headers, body, timeout_ms) }
    }
}

impl Callouts for Stream {
    const SEND: CalloutFn = envoy_dynamic_module_callback_http_filter_http_callout;

    fn owner(self) -> *mut c_void {
        self.0
    }
}

impl Callouts for Config {
    const SEND: CalloutFn = envoy_dynamic_module_callback_http_filter_config_http_callout;

    fn owner(self) -> *mut c_void {
        self.0
    }
}

/// An HTTP request to `cluster` sent with `send` for `owner`: its id, when Envoy took it.
///
/// # Safety
/// `owner` must be live and of the kind `send` takes, on the thread `send` requires.
unsafe fn callout(
    send: CalloutFn,
    owner: *mut c_void,
    cluster: &str,
    headers: &[(&str, &str)],
    body: &[u8],
    timeout_ms: u64,
) -> Option<u64> {
    let mut pairs: Vec<HeaderPair> = headers
        .iter()
        .map(|(k, v)| HeaderPair::of(k.as_bytes(), v.as_bytes()))
        .collect();
    let mut id = 0u64;
    // SAFETY: the caller's promise; every buffer lives for the call and Envoy copies them.
    let result = unsafe {
        send(
            owner,
            &mut id,
            ModuleBuffer::of(cluster.as_bytes()),
            pairs.as_mut_ptr(),
            pairs.len(),
            ModuleBuffer::of(body),
            timeout_ms,
        )
    };
    (result == CALLOUT_OK).then_some(id)
}

/// A callout's answer: whether its status is 200, and its body in one piece.
///
/// # Safety
/// `headers` and `chunks` must point to `headers_size` pairs and `chunks_size` buffers valid
/// for the hook's duration (either may be null when the size is 0).
pub unsafe fn callout_answer(
    headers: *const HeaderPair,
    headers_size: usize,
    chunks: *const EnvoyBuffer,
    chunks_size: usize,
) -> (bool, Vec<u8>) {
    // SAFETY: the caller's promise.
    let ok =
        unsafe { header_pairs(headers, headers_size) }.any(|(k, v)| k == b":status" && v == b"200");
    let chunks: &[EnvoyBuffer] = if chunks.is_null() {
        &[]
    } else {
        // SAFETY: the caller's promise.
        unsafe { std::slice::from_raw_parts(chunks, chunks_size) }
    };
    let mut body = Vec::new();
    for chunk in chunks {
        // SAFETY: each chunk is Envoy's, valid for the hook.
        body.extend_from_slice(unsafe { chunk.bytes() });
    }
    (ok, body)
}

/// A buffer Envoy hands to a hook (the configuration's name or bytes).
///
/// # Safety
/// As [`EnvoyBuffer::bytes`].
pub unsafe fn envoy_bytes<'a>(buffer: EnvoyBuffer) -> &'a [u8] {
    // SAFETY: the caller's promise.
    unsafe { buffer.bytes() }
}
