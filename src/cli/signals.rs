//! The command line's signal handling: on SIGINT, SIGTERM or SIGHUP, remove
//! the run's temporary files (and put back files a commit moved aside),
//! then exit with 128 + the signal number (130 for Ctrl-C).

/// Installs the handler (a thread waiting for the signals, not
/// async-signal code). Call once, early in `main`; does nothing on other
/// platforms.
pub(crate) fn install_cleanup_handler() {
    #[cfg(unix)]
    {
        use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
        let Ok(mut signals) = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP]) else {
            return;
        };
        let spawned = std::thread::Builder::new()
            .name("deepinit-signals".into())
            .spawn(move || {
                if let Some(sig) = signals.forever().next() {
                    crate::io::output::remove_temporaries();
                    // Never panics, even with stderr gone (`2>&1 | head`).
                    use std::io::Write;
                    let _ = writeln!(
                        std::io::stderr(),
                        "\ndeepinit: interrupted (signal {sig}); no output was written"
                    );
                    std::process::exit(128 + sig);
                }
            });
        // Without the thread the default action (terminate) stays: temporaries
        // are then swept by the next run.
        drop(spawned);
    }
}
