package dev.tether.core.rpc;

import com.google.gson.Gson;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import com.google.gson.JsonParseException;
import com.google.gson.JsonParser;
import dev.tether.core.Json;
import java.io.Closeable;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.CompletionException;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicBoolean;
import java.util.concurrent.atomic.AtomicLong;
import java.util.function.Consumer;

/**
 * JSON-RPC 2.0 over one framed byte stream (LSP base protocol), transport-agnostic.
 *
 * <p>Requests get increasing integer ids and complete a future with their result or an
 * {@link RpcException}; a request that times out is removed and cancelled with
 * {@code $/cancelRequest}. Notifications from the peer go to the notification handler in the
 * order they came, on one dispatch thread (so a slow handler never stalls the reader). Requests
 * from the peer (e.g. {@code window/workDoneProgress/create}) go to the request handler; without
 * one they get "method not found". When the stream ends every pending request fails with
 * {@link ConnectionClosedException} and the close listener runs once.
 */
public final class JsonRpcConnection implements Closeable {
    /** A notification from the peer. */
    public interface NotificationHandler {
        void notification(String method, JsonElement params);
    }

    /** A request from the peer; the result is sent back (an {@link RpcException} as an error). */
    public interface RequestHandler {
        JsonElement request(String method, JsonElement params) throws RpcException;
    }

    private static final Gson GSON = Json.GSON;

    private final String name;
    private final InputStream in;
    private final OutputStream out;
    private final Closeable transport;
    private final Map<Long, CompletableFuture<JsonElement>> pending = new ConcurrentHashMap<>();
    private final AtomicLong nextId = new AtomicLong();
    private final AtomicBoolean closed = new AtomicBoolean();
    private final Object writeLock = new Object();
    private final ExecutorService dispatch;
    private volatile NotificationHandler notificationHandler = (m, p) -> {};
    private volatile RequestHandler requestHandler;
    private volatile Consumer<Throwable> closeListener = t -> {};
    private volatile Throwable closeCause;
    private Thread reader;

    public JsonRpcConnection(String name, InputStream in, OutputStream out, Closeable transport) {
        this.name = name;
        this.in = new java.io.BufferedInputStream(in, 64 << 10);
        this.out = out;
        this.transport = transport;
        this.dispatch = Executors.newSingleThreadExecutor(r -> {
            Thread t = new Thread(r, name + "-dispatch");
            t.setDaemon(true);
            return t;
        });
    }

    public void setNotificationHandler(NotificationHandler h) {
        notificationHandler = h == null ? (m, p) -> {} : h;
    }

    public void setRequestHandler(RequestHandler h) {
        requestHandler = h;
    }

    /** Runs once when the connection ends; the argument says why ({@code null}: closed by us). */
    public void setCloseListener(Consumer<Throwable> l) {
        closeListener = l == null ? t -> {} : l;
    }

    /** Starts reading. Call once, after the handlers are set. */
    public synchronized void start() {
        if (reader != null) {
            throw new IllegalStateException("already started");
        }
        reader = new Thread(this::readLoop, name + "-reader");
        reader.setDaemon(true);
        reader.start();
    }

    public boolean isOpen() {
        return !closed.get();
    }

    /** Sends a request; the future completes with its result (JSON null when it had none). */
    public CompletableFuture<JsonElement> request(String method, Object params, Duration timeout) {
        long id = nextId.incrementAndGet();
        CompletableFuture<JsonElement> f = new CompletableFuture<>();
        if (closed.get()) {
            f.completeExceptionally(closedError());
            return f;
        }
        pending.put(id, f);
        JsonObject msg = new JsonObject();
        msg.addProperty("jsonrpc", "2.0");
        msg.addProperty("id", id);
        msg.addProperty("method", method);
        if (params != null) {
            msg.add("params", toTree(params));
        }
        try {
            send(msg);
        } catch (IOException e) {
            pending.remove(id);
            f.completeExceptionally(e instanceof ConnectionClosedException ? e
                    : new ConnectionClosedException("sending to the tether daemon failed: " + e.getMessage(), e));
            return f;
        }
        if (timeout != null) {
            f.orTimeout(timeout.toMillis(), TimeUnit.MILLISECONDS).whenComplete((r, t) -> {
                if (unwrap(t) instanceof TimeoutException) {
                    pending.remove(id);
                    JsonObject p = new JsonObject();
                    p.addProperty("id", id);
                    try {
                        notify("$/cancelRequest", p);
                    } catch (IOException ignored) {
                        // the connection is gone anyway
                    }
                }
            });
        }
        return f;
    }

    /** Sends a request and waits for its answer. */
    public JsonElement call(String method, Object params, Duration timeout) throws IOException {
        try {
            return request(method, params, timeout).get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new ConnectionClosedException("interrupted while waiting for " + method, e);
        } catch (ExecutionException e) {
            Throwable c = unwrap(e);
            if (c instanceof RpcException r) {
                throw r;
            }
            if (c instanceof TimeoutException) {
                throw new RequestTimeoutException(method + " got no answer from the tether daemon within "
                        + timeout.toMillis() + " ms");
            }
            if (c instanceof IOException io) {
                throw io;
            }
            throw new IOException(method + " failed: " + c, c);
        }
    }

    /** Sends a notification. */
    public void notify(String method, Object params) throws IOException {
        JsonObject msg = new JsonObject();
        msg.addProperty("jsonrpc", "2.0");
        msg.addProperty("method", method);
        if (params != null) {
            msg.add("params", toTree(params));
        }
        send(msg);
    }

    private static JsonElement toTree(Object params) {
        return params instanceof JsonElement e ? e : GSON.toJsonTree(params);
    }

    private void send(JsonObject msg) throws IOException {
        if (closed.get()) {
            throw closedError();
        }
        byte[] frame = Framing.encode(GSON.toJson(msg).getBytes(StandardCharsets.UTF_8));
        synchronized (writeLock) {
            try {
                out.write(frame);
                out.flush();
            } catch (IOException e) {
                shutdown(e);
                throw new ConnectionClosedException("sending to the tether daemon failed: " + e.getMessage(), e);
            }
        }
    }

    private ConnectionClosedException closedError() {
        Throwable c = closeCause;
        String why = c == null ? "it was closed" : c.getMessage();
        return new ConnectionClosedException("the connection to the tether daemon is closed (" + why + ")", c);
    }

    private void readLoop() {
        Throwable why;
        try {
            while (true) {
                byte[] body = Framing.read(in);
                if (body == null) {
                    why = new ConnectionClosedException("the tether daemon closed the connection");
                    break;
                }
                handle(body);
            }
        } catch (IOException e) {
            why = closed.get() ? null : e;
        } catch (RuntimeException e) {
            why = e;
        }
        shutdown(why);
    }

    private void handle(byte[] body) throws IOException {
        JsonObject msg;
        try {
            JsonElement e = JsonParser.parseString(new String(body, StandardCharsets.UTF_8));
            if (!e.isJsonObject()) {
                return;
            }
            msg = e.getAsJsonObject();
        } catch (JsonParseException e) {
            return; // the daemon never sends this; ignore rather than drop the connection
        }
        JsonElement id = msg.get("id");
        JsonElement method = msg.get("method");
        if (method != null && method.isJsonPrimitive()) {
            String m = method.getAsString();
            JsonElement params = msg.has("params") ? msg.get("params") : JsonNull.INSTANCE;
            if (id == null || id.isJsonNull()) {
                dispatch.execute(() -> {
                    try {
                        notificationHandler.notification(m, params);
                    } catch (RuntimeException ignored) {
                        // a listener's bug must not end the connection
                    }
                });
            } else {
                dispatch.execute(() -> answer(id, m, params));
            }
            return;
        }
        if (id == null || !id.isJsonPrimitive() || !id.getAsJsonPrimitive().isNumber()) {
            return;
        }
        CompletableFuture<JsonElement> f = pending.remove(id.getAsLong());
        if (f == null) {
            return; // timed out or cancelled
        }
        JsonElement error = msg.get("error");
        if (error != null && error.isJsonObject()) {
            JsonObject err = error.getAsJsonObject();
            int code = err.has("code") ? err.get("code").getAsInt() : RpcException.INTERNAL_ERROR;
            String message = err.has("message") ? err.get("message").getAsString() : "the daemon answered an error";
            f.completeExceptionally(new RpcException(code, message, err.get("data")));
        } else {
            JsonElement result = msg.get("result");
            f.complete(result == null ? JsonNull.INSTANCE : result);
        }
    }

    private void answer(JsonElement id, String method, JsonElement params) {
        JsonObject reply = new JsonObject();
        reply.addProperty("jsonrpc", "2.0");
        reply.add("id", id);
        RequestHandler h = requestHandler;
        try {
            if (h == null) {
                throw new RpcException(RpcException.METHOD_NOT_FOUND, "method not found: " + method, null);
            }
            JsonElement r = h.request(method, params);
            reply.add("result", r == null ? JsonNull.INSTANCE : r);
        } catch (RpcException e) {
            JsonObject err = new JsonObject();
            err.addProperty("code", e.code());
            err.addProperty("message", e.getMessage());
            reply.add("error", err);
        } catch (RuntimeException e) {
            JsonObject err = new JsonObject();
            err.addProperty("code", RpcException.INTERNAL_ERROR);
            err.addProperty("message", String.valueOf(e));
            reply.add("error", err);
        }
        try {
            // A null result must be sent as `"result": null`, which Gson drops by default.
            byte[] frame = Framing.encode(Json.withNulls(reply).getBytes(StandardCharsets.UTF_8));
            synchronized (writeLock) {
                out.write(frame);
                out.flush();
            }
        } catch (IOException ignored) {
            // the reader sees the end
        }
    }

    private void shutdown(Throwable why) {
        if (!closed.compareAndSet(false, true)) {
            return;
        }
        closeCause = why;
        try {
            transport.close();
        } catch (IOException ignored) {
            // closing anyway
        }
        ConnectionClosedException e = closedError();
        for (Long id : pending.keySet()) {
            CompletableFuture<JsonElement> f = pending.remove(id);
            if (f != null) {
                f.completeExceptionally(e);
            }
        }
        Consumer<Throwable> l = closeListener;
        dispatch.execute(() -> l.accept(why));
        dispatch.shutdown();
    }

    /** Closes the connection; pending requests fail. */
    @Override
    public void close() {
        shutdown(null);
    }

    private static Throwable unwrap(Throwable t) {
        while ((t instanceof CompletionException || t instanceof ExecutionException) && t.getCause() != null) {
            t = t.getCause();
        }
        return t;
    }
}
