//! The backend of `bench/grpc`: a fast unary gRPC server over h2c (HTTP/2 with prior
//! knowledge), written with the `h2` crate and nothing else, so that the backend costs little
//! next to the proxy in front of it.
//!
//! Every request (any path, any method) is answered as a successful unary call: the request
//! body is read to its end, then the response is status 200, `content-type:
//! application/grpc`, one gRPC message (the request's first message echoed back, or an empty
//! message when the request had none) and the trailers `grpc-status: 0`.
//!
//! ```sh
//! cargo build --release --example grpc_backend
//! target/release/examples/grpc_backend --listen 127.0.0.1:22101 --threads 1
//! ```

use bytes::{Bytes, BytesMut};
use clap::Parser;
use h2::server::SendResponse;
use http::{HeaderMap, HeaderValue, Response, StatusCode};
use tokio::net::{TcpListener, TcpStream};

/// The allocator (the `mimalloc` feature, on by default), as in fulcrum and `bare_pingora`.
#[cfg(feature = "mimalloc")]
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// A unary gRPC echo server over h2c, for benchmarks.
#[derive(Parser)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:22101")]
    listen: String,
    /// Tokio worker threads (1: a current-thread runtime).
    #[arg(long, default_value_t = 1)]
    threads: usize,
    /// Streams one client connection may carry at once (HTTP/2 SETTINGS_MAX_CONCURRENT_STREAMS).
    #[arg(long, default_value_t = 1000)]
    max_streams: u32,
}

/// The gRPC message header: a compression flag (0) and a 4-byte big-endian length.
const GRPC_HEADER_LEN: usize = 5;

fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let runtime = if args.threads <= 1 {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(args.threads)
            .enable_all()
            .build()?
    };
    runtime.block_on(serve(args))
}

/// Accepts connections until the process is killed.
async fn serve(args: Args) -> std::io::Result<()> {
    let listener = TcpListener::bind(&args.listen).await?;
    loop {
        let (stream, _) = listener.accept().await?;
        let _ = stream.set_nodelay(true);
        tokio::spawn(connection(stream, args.max_streams));
    }
}

/// One client connection: every stream it opens is answered on its own task.
async fn connection(stream: TcpStream, max_streams: u32) {
    let mut builder = h2::server::Builder::new();
    builder
        .max_concurrent_streams(max_streams)
        .initial_window_size(1 << 20)
        .initial_connection_window_size(1 << 24);
    let Ok(mut conn) = builder.handshake::<_, Bytes>(stream).await else {
        return;
    };
    while let Some(Ok((request, respond))) = conn.accept().await {
        tokio::spawn(call(request.into_body(), respond));
    }
}

/// One unary call: read the request body, answer with its first message and `grpc-status: 0`.
async fn call(mut body: h2::RecvStream, mut respond: SendResponse<Bytes>) {
    let mut received = BytesMut::new();
    while let Some(chunk) = body.data().await {
        let Ok(chunk) = chunk else {
            return;
        };
        let _ = body.flow_control().release_capacity(chunk.len());
        received.extend_from_slice(&chunk);
    }
    let message = first_message(received.freeze());
    let response = Response::builder()
        .status(StatusCode::OK)
        .header("content-type", "application/grpc")
        .body(())
        .expect("a fixed, valid response head");
    let Ok(mut send) = respond.send_response(response, false) else {
        return;
    };
    if send.send_data(message, false).is_err() {
        return;
    }
    let mut trailers = HeaderMap::new();
    trailers.insert("grpc-status", HeaderValue::from_static("0"));
    let _ = send.send_trailers(trailers);
}

/// The first complete gRPC message of `body` (header included), or an empty message.
fn first_message(body: Bytes) -> Bytes {
    if body.len() >= GRPC_HEADER_LEN {
        let len = u32::from_be_bytes([body[1], body[2], body[3], body[4]]) as usize;
        if body.len() >= GRPC_HEADER_LEN + len {
            return body.slice(..GRPC_HEADER_LEN + len);
        }
    }
    Bytes::from_static(&[0, 0, 0, 0, 0])
}
