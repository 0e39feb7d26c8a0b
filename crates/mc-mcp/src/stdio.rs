//! The stdio transport's front door: a line filter between the process's stdin/stdout and rmcp.
//!
//! rmcp drops a line that is not JSON without a word, and drops a line over its length limit the
//! same way. JSON-RPC 2.0 answers both: a parse error (-32700) with a null id, and an invalid
//! request (-32600). The filter reads stdin line by line, answers those lines itself, and passes
//! every other line to rmcp unchanged; rmcp still answers JSON that is not a valid message.
//! rmcp's replies and the filter's go through one writer, one whole line at a time, so the two
//! never interleave on stdout.

use serde_json::json;
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, DuplexStream};
use tokio::sync::mpsc;

/// The longest line passed on: rmcp's own limit (16 MiB).
pub const MAX_LINE_BYTES: usize = 16 << 20;
/// Buffer of each in-process pipe to and from rmcp.
const PIPE_BYTES: usize = 64 * 1024;
const UTF8_BOM: &[u8] = b"\xef\xbb\xbf";

/// What the filter makes of one line read from the client.
#[derive(Debug, PartialEq)]
enum Verdict {
    /// Blank: nothing to do.
    Skip,
    /// JSON: rmcp's to judge.
    Forward,
    /// Not JSON, or too long: answered here with this error line.
    Reply(Vec<u8>),
}

fn judge(line: &[u8], oversized: bool) -> Verdict {
    if oversized {
        let message = format!("message exceeds the {} MiB line limit; it was discarded", MAX_LINE_BYTES >> 20);
        return Verdict::Reply(error_line(-32600, &message));
    }
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    let line = line.strip_prefix(UTF8_BOM).unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Verdict::Skip;
    }
    match serde_json::from_slice::<serde::de::IgnoredAny>(line) {
        Ok(_) => Verdict::Forward,
        Err(e) => Verdict::Reply(error_line(-32700, &format!("parse error: the message is not JSON ({e})"))),
    }
}

fn error_line(code: i64, message: &str) -> Vec<u8> {
    let mut line = json!({"jsonrpc": "2.0", "id": null, "error": {"code": code, "message": message}}).to_string();
    line.push('\n');
    line.into_bytes()
}

/// Reads one line into `line` (newline included), keeping at most `max` bytes of it. Returns the
/// number of bytes the line had (0 at end of input); more than `max` means the rest was discarded.
async fn read_line_capped<R: AsyncBufRead + Unpin>(
    reader: &mut R,
    line: &mut Vec<u8>,
    max: usize,
) -> std::io::Result<usize> {
    line.clear();
    let mut total = 0;
    loop {
        let buf = reader.fill_buf().await?;
        if buf.is_empty() {
            return Ok(total);
        }
        let (take, done) = match buf.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (buf.len(), false),
        };
        let room = (max + 1).saturating_sub(line.len());
        line.extend_from_slice(&buf[..take.min(room)]);
        total += take;
        reader.consume(take);
        if done {
            return Ok(total);
        }
    }
}

/// Reads client lines from `input`: JSON goes to `to_rmcp`, the rest is answered through `replies`.
async fn filter_input<R: AsyncRead + Unpin>(input: R, mut to_rmcp: DuplexStream, replies: mpsc::Sender<Vec<u8>>) {
    let mut reader = BufReader::new(input);
    let mut line = Vec::new();
    loop {
        let len = match read_line_capped(&mut reader, &mut line, MAX_LINE_BYTES).await {
            Ok(0) => break,
            Ok(len) => len,
            Err(e) => {
                tracing::error!("reading stdin: {e}");
                break;
            }
        };
        match judge(&line, len > MAX_LINE_BYTES) {
            Verdict::Skip => {}
            Verdict::Forward => {
                if !line.ends_with(b"\n") {
                    line.push(b'\n');
                }
                if to_rmcp.write_all(&line).await.is_err() {
                    break;
                }
            }
            Verdict::Reply(reply) => {
                tracing::info!(bytes = len, "answered an unreadable stdin line with a JSON-RPC error");
                if replies.send(reply).await.is_err() {
                    break;
                }
            }
        }
    }
    // Closing the pipe is rmcp's end of input.
    let _ = to_rmcp.shutdown().await;
}

/// Splits rmcp's output into whole lines for the writer.
async fn collect_output(from_rmcp: DuplexStream, lines: mpsc::Sender<Vec<u8>>) {
    let mut reader = BufReader::new(from_rmcp);
    loop {
        let mut line = Vec::new();
        match reader.read_until(b'\n', &mut line).await {
            Ok(0) | Err(_) => break,
            Ok(_) => {
                if lines.send(line).await.is_err() {
                    break;
                }
            }
        }
    }
}

/// Writes whole lines to `output`, flushing after each burst.
async fn write_lines<W: AsyncWrite + Unpin>(mut output: W, mut lines: mpsc::Receiver<Vec<u8>>) {
    while let Some(line) = lines.recv().await {
        if output.write_all(&line).await.is_err() {
            return;
        }
        while let Ok(line) = lines.try_recv() {
            if output.write_all(&line).await.is_err() {
                return;
            }
        }
        if output.flush().await.is_err() {
            return;
        }
    }
}

/// Puts the filter between `input`/`output` (the process's stdin and stdout) and returns the pair
/// rmcp serves on. The filter's tasks end when the client closes its input and rmcp its output.
pub fn filtered<R, W>(input: R, output: W) -> (DuplexStream, DuplexStream)
where
    R: AsyncRead + Unpin + Send + 'static,
    W: AsyncWrite + Unpin + Send + 'static,
{
    let (rmcp_in, to_rmcp) = tokio::io::duplex(PIPE_BYTES);
    let (rmcp_out, from_rmcp) = tokio::io::duplex(PIPE_BYTES);
    let (lines_tx, lines_rx) = mpsc::channel(64);
    tokio::spawn(filter_input(input, to_rmcp, lines_tx.clone()));
    tokio::spawn(collect_output(from_rmcp, lines_tx));
    tokio::spawn(write_lines(output, lines_rx));
    (rmcp_in, rmcp_out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reply(v: Verdict) -> serde_json::Value {
        match v {
            Verdict::Reply(line) => serde_json::from_slice(&line).expect("a JSON reply"),
            other => panic!("expected a reply, got {other:?}"),
        }
    }

    #[test]
    fn lines_are_judged_like_json_rpc_asks() {
        assert_eq!(judge(b"\n", false), Verdict::Skip);
        assert_eq!(judge(b"  \r\n", false), Verdict::Skip);
        assert_eq!(judge(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\r\n", false), Verdict::Forward);
        assert_eq!(judge(b"\xef\xbb\xbf{}\n", false), Verdict::Forward);
        // Valid JSON that is no message is rmcp's to answer (-32600 with the id when it has one).
        assert_eq!(judge(b"[1, 2]\n", false), Verdict::Forward);
        let r = reply(judge(b"this is not json {\n", false));
        assert_eq!(r["error"]["code"], -32700);
        assert!(r["id"].is_null());
        assert!(r["error"]["message"].as_str().is_some_and(|m| m.starts_with("parse error")), "{r}");
        assert_eq!(reply(judge(b"{\"id\": 1,", false))["error"]["code"], -32700);
        let r = reply(judge(b"{}", true));
        assert_eq!(r["error"]["code"], -32600);
        assert!(r["error"]["message"].as_str().is_some_and(|m| m.contains("16 MiB")), "{r}");
    }

    #[tokio::test]
    async fn long_lines_are_cut_at_the_cap_and_the_next_line_is_whole() {
        let input: &[u8] = b"0123456789\nabc\nlast";
        // A tiny buffer makes the reader see each line in several pieces.
        let mut reader = BufReader::with_capacity(3, input);
        let mut line = Vec::new();
        assert_eq!(read_line_capped(&mut reader, &mut line, 4).await.expect("read"), 11);
        assert_eq!(line, b"01234");
        assert_eq!(read_line_capped(&mut reader, &mut line, 4).await.expect("read"), 4);
        assert_eq!(line, b"abc\n");
        assert_eq!(read_line_capped(&mut reader, &mut line, 4).await.expect("read"), 4);
        assert_eq!(line, b"last");
        assert_eq!(read_line_capped(&mut reader, &mut line, 4).await.expect("read"), 0);
    }

    #[tokio::test]
    async fn replies_and_forwarded_lines_keep_their_order_and_wholeness() {
        let (client, server_side) = tokio::io::duplex(1024);
        let (client_read, mut client_write) = tokio::io::split(client);
        let (server_in, server_out) = tokio::io::split(server_side);
        let (mut rmcp_in, mut rmcp_out) = filtered(server_in, server_out);

        client_write.write_all(b"garbage\n{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n").await.expect("write");
        let mut forwarded = BufReader::new(&mut rmcp_in);
        let mut line = String::new();
        forwarded.read_line(&mut line).await.expect("forwarded");
        assert_eq!(line, "{\"jsonrpc\":\"2.0\",\"id\":1,\"method\":\"ping\"}\n");

        rmcp_out.write_all(b"{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n").await.expect("rmcp writes");
        let mut out = BufReader::new(client_read);
        let mut first = String::new();
        out.read_line(&mut first).await.expect("first line");
        let mut second = String::new();
        out.read_line(&mut second).await.expect("second line");
        let first: serde_json::Value = serde_json::from_str(&first).expect("json");
        assert_eq!(first["error"]["code"], -32700, "the parse error was answered first");
        assert_eq!(second, "{\"jsonrpc\":\"2.0\",\"id\":1,\"result\":{}}\n");

        // The client closing its input is rmcp's end of input.
        client_write.shutdown().await.expect("close the client's input");
        line.clear();
        assert_eq!(forwarded.read_line(&mut line).await.expect("eof"), 0);
    }
}
