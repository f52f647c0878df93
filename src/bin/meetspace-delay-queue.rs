//! `meetspace-delay-queue`: delays packets by a fixed time, for the impaired-network
//! harness (docs/impaired-network.md). This kernel has no `tc netem`, so packets are sent
//! to userspace with an NFQUEUE rule and this helper holds each one for the delay before
//! it accepts it (order is kept: every packet waits the same time).
//!
//! ```text
//! iptables -A OUTPUT -p udp -j NFQUEUE --queue-num 7
//! meetspace-delay-queue --queue 7 --delay-ms 50
//! ```
//!
//! It prints `ready` on stdout once it listens on the queue, and runs until killed.

#[cfg(target_os = "linux")]
fn main() -> anyhow::Result<()> {
    use clap::Parser;
    linux::run(&linux::Args::parse())
}

#[cfg(not(target_os = "linux"))]
fn main() {
    eprintln!("meetspace-delay-queue: NFQUEUE exists only on Linux");
    std::process::exit(1);
}

#[cfg(target_os = "linux")]
mod linux {
    use std::collections::VecDeque;
    use std::io::Write;
    use std::time::{Duration, Instant};

    use anyhow::Context;
    use nfq::{Message, Queue, Verdict};

    /// Most packets the kernel holds for us before it drops new ones.
    const KERNEL_QUEUE_LEN: u32 = 8192;
    /// Longest sleep while packets are waiting; bounds how late a packet leaves.
    const POLL_INTERVAL: Duration = Duration::from_millis(1);

    /// Command-line flags.
    #[derive(Debug, clap::Parser)]
    #[command(about = "Delays the packets of one NFQUEUE by a fixed time")]
    pub struct Args {
        /// The NFQUEUE number to listen on.
        #[arg(long)]
        pub queue: u16,
        /// How long each packet is held before it goes on, in milliseconds.
        #[arg(long)]
        pub delay_ms: u64,
    }

    /// Listens on the queue and releases each packet `delay_ms` after it arrived.
    pub fn run(args: &Args) -> anyhow::Result<()> {
        let mut queue = Queue::open().context("cannot open a netfilter queue socket")?;
        queue
            .bind(args.queue)
            .with_context(|| format!("cannot bind NFQUEUE {}", args.queue))?;
        // Only the verdict matters: no packet contents are copied to us.
        queue
            .set_copy_range(args.queue, 0)
            .context("cannot set the copy range")?;
        queue
            .set_queue_max_len(args.queue, KERNEL_QUEUE_LEN)
            .context("cannot set the queue length")?;
        queue.set_nonblocking(true);
        println!("ready");
        std::io::stdout().flush()?;

        let delay = Duration::from_millis(args.delay_ms);
        let mut held: VecDeque<(Instant, Message)> = VecDeque::new();
        loop {
            loop {
                match queue.recv() {
                    Ok(message) => held.push_back((Instant::now() + delay, message)),
                    Err(error) if error.kind() == std::io::ErrorKind::WouldBlock => break,
                    Err(error) => return Err(error).context("reading the queue"),
                }
            }
            let now = Instant::now();
            while held.front().is_some_and(|(due, _)| *due <= now) {
                if let Some((_, mut message)) = held.pop_front() {
                    message.set_verdict(Verdict::Accept);
                    queue.verdict(message).context("releasing a packet")?;
                }
            }
            let wait = held
                .front()
                .map_or(POLL_INTERVAL, |(due, _)| due.saturating_duration_since(now))
                .min(POLL_INTERVAL);
            std::thread::sleep(wait);
        }
    }
}
