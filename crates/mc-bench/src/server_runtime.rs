//! The runtime of a bench that runs a server in its own process, set up as `mc server` sets up
//! its own: the in-process models' thread count pinned first, then a multi-thread runtime.
//! Shared by the bench binaries (`#[path]`-included: the package has no library target).

/// Runs `main` to completion on that runtime. Call it from `fn main`, before any other thread.
pub fn block_on<F: std::future::Future<Output = anyhow::Result<()>>>(main: F) -> anyhow::Result<()> {
    // SAFETY: called first thing in `main` (see above): no other thread exists yet, and the
    // runtime is built after this.
    #[allow(unsafe_code)]
    unsafe {
        mc_embed::pin_model_threads()
    };
    tokio::runtime::Builder::new_multi_thread().enable_all().build()?.block_on(main)
}
