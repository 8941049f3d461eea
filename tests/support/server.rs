//! The accept loop every test server shares: a listener on a port [`free_port`] never hands
//! out, one task per connection, and a stop that closes the listener and every connection.
//!
//! [`free_port`]: super::free_port

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use super::ports::bind_unreserved;

/// A listening test server: accepts on 127.0.0.1 and hands each connection to `serve`.
pub(super) struct Server {
    addr: SocketAddr,
    accept_task: Mutex<Option<JoinHandle<()>>>,
    conn_tasks: Arc<Mutex<Vec<JoinHandle<()>>>>,
}

impl Server {
    /// Binds a port and starts accepting. `on_accept` runs in the accept loop, in accept order
    /// (so per-connection numbering is deterministic), and returns the future that serves the
    /// connection in its own task.
    pub(super) fn start<F, Fut>(on_accept: F) -> Server
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        Server::start_on(bind_unreserved(), on_accept)
    }

    /// Like [`Server::start`], on a listener the caller bound.
    pub(super) fn start_on<F, Fut>(listener: TcpListener, on_accept: F) -> Server
    where
        F: Fn(TcpStream) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        let addr = listener.local_addr().expect("test server: local_addr");
        let conn_tasks: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::new(Mutex::new(Vec::new()));
        let accept_task = {
            let conn_tasks = conn_tasks.clone();
            tokio::spawn(async move {
                loop {
                    let (stream, _) = match listener.accept().await {
                        Ok(s) => s,
                        Err(_) => {
                            tokio::time::sleep(Duration::from_millis(10)).await;
                            continue;
                        }
                    };
                    let handle = tokio::spawn(on_accept(stream));
                    let mut tasks = conn_tasks.lock().unwrap();
                    tasks.retain(|t| !t.is_finished());
                    tasks.push(handle);
                }
            })
        };
        Server {
            addr,
            accept_task: Mutex::new(Some(accept_task)),
            conn_tasks,
        }
    }

    /// Its port on 127.0.0.1.
    pub(super) fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `IP:PORT` (`127.0.0.1:PORT` unless bound elsewhere), as written in configs.
    pub(super) fn addr(&self) -> String {
        self.addr.to_string()
    }

    /// Closes the listener and every open connection, and waits until they are gone.
    /// Afterwards connections to the port are refused.
    pub(super) async fn stop(&self) {
        let accept = self.accept_task.lock().unwrap().take();
        if let Some(task) = accept {
            task.abort();
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
        let conns: Vec<JoinHandle<()>> = self.conn_tasks.lock().unwrap().drain(..).collect();
        for task in &conns {
            task.abort();
        }
        for task in conns {
            let _ = tokio::time::timeout(Duration::from_secs(5), task).await;
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Some(task) = self.accept_task.lock().unwrap().take() {
            task.abort();
        }
        for task in self.conn_tasks.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}
