//! A `log` backend over `proxy_log` that never panics (the SDK's panics on an
//! unexpected host status). The level follows Envoy's, read on VM start and on every configure.

use proxy_wasm::types::LogLevel;

use super::raw;

struct HostLogger;

static LOGGER: HostLogger = HostLogger;

pub fn install() {
    // Fails only if a logger is already set, which then keeps working.
    let _ = log::set_logger(&LOGGER);
    std::panic::set_hook(Box::new(|info| {
        raw::log(LogLevel::Critical, &format!("rollout-filter: {info}"));
    }));
    // The level itself is read later: host calls are refused during `_initialize`.
    log::set_max_level(log::LevelFilter::Info);
}

/// Match `log::max_level` to Envoy's wasm log level so disabled levels cost nothing.
pub fn refresh_level() {
    let filter = match raw::log_level() {
        Some(0) => log::LevelFilter::Trace,
        Some(1) => log::LevelFilter::Debug,
        Some(3) => log::LevelFilter::Warn,
        Some(4..) => log::LevelFilter::Error,
        _ => log::LevelFilter::Info,
    };
    log::set_max_level(filter);
}

impl log::Log for HostLogger {
    fn enabled(&self, metadata: &log::Metadata) -> bool {
        metadata.level() <= log::max_level()
    }

    fn log(&self, record: &log::Record) {
        if !self.enabled(record.metadata()) {
            return;
        }
        let level = match record.level() {
            log::Level::Trace => LogLevel::Trace,
            log::Level::Debug => LogLevel::Debug,
            log::Level::Info => LogLevel::Info,
            log::Level::Warn => LogLevel::Warn,
            log::Level::Error => LogLevel::Error,
        };
        raw::log(level, &record.args().to_string());
    }

    fn flush(&self) {}
}
