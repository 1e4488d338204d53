package dev.tether.core.rpc;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import com.google.gson.JsonParser;
import java.io.IOException;
import java.io.InputStream;
import java.io.OutputStream;
import java.io.PipedInputStream;
import java.io.PipedOutputStream;
import java.nio.charset.StandardCharsets;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeEach;
import org.junit.jupiter.api.Test;

/** The JSON-RPC layer against a scripted peer over pipes. */
class JsonRpcConnectionTest {
    private PipedOutputStream toClient;
    private InputStream fromClient;
    private OutputStream clientOut;
    private JsonRpcConnection conn;

    @BeforeEach
    void setUp() throws IOException {
        PipedInputStream clientIn = new PipedInputStream(1 << 20);
        toClient = new PipedOutputStream(clientIn);
        PipedInputStream peerIn = new PipedInputStream(1 << 20);
        clientOut = new PipedOutputStream(peerIn);
        fromClient = peerIn;
        conn = new JsonRpcConnection("test", clientIn, clientOut, () -> {
            clientIn.close();
            clientOut.close();
        });
    }

    @AfterEach
    void tearDown() {
        conn.close();
    }

    private JsonObject nextFromClient() throws IOException {
        return JsonParser.parseString(new String(Framing.read(fromClient), StandardCharsets.UTF_8)).getAsJsonObject();
    }

    private void sendToClient(String json) throws IOException {
        toClient.write(Framing.encode(json.getBytes(StandardCharsets.UTF_8)));
        toClient.flush();
    }

    @Test
    void answersCompleteTheirRequestsInAnyOrder() throws Exception {
        conn.start();
        var a = conn.request("a", null, Duration.ofSeconds(5));
        var b = conn.request("b", new JsonObject(), Duration.ofSeconds(5));
        JsonObject ra = nextFromClient();
        JsonObject rb = nextFromClient();
        assertEquals("a", ra.get("method").getAsString());
        assertFalse(ra.has("params"));
        assertEquals("2.0", rb.get("jsonrpc").getAsString());
        sendToClient("{\"jsonrpc\":\"2.0\",\"id\":" + rb.get("id") + ",\"result\":{\"x\":2}}");
        sendToClient("{\"jsonrpc\":\"2.0\",\"id\":" + ra.get("id") + ",\"result\":null}");
        assertEquals(2, b.get(5, TimeUnit.SECONDS).getAsJsonObject().get("x").getAsInt());
        assertTrue(a.get(5, TimeUnit.SECONDS).isJsonNull());
    }

    @Test
    void errorsBecomeRpcExceptions() throws Exception {
        conn.start();
        Thread peer = new Thread(() -> {
            try {
                JsonObject r = nextFromClient();
                sendToClient("{\"jsonrpc\":\"2.0\",\"id\":" + r.get("id")
                        + ",\"error\":{\"code\":-32601,\"message\":\"Method not found\"}}");
            } catch (IOException ignored) {
                // the test fails below
            }
        });
        peer.start();
        RpcException e = assertThrows(RpcException.class, () -> conn.call("nope", null, Duration.ofSeconds(5)));
        assertEquals(RpcException.METHOD_NOT_FOUND, e.code());
        assertEquals("Method not found", e.getMessage());
        peer.join();
    }

    @Test
    void aTimeoutCancelsTheRequest() throws Exception {
        conn.start();
        assertThrows(RequestTimeoutException.class, () -> conn.call("slow", null, Duration.ofMillis(100)));
        JsonObject req = nextFromClient();
        JsonObject cancel = nextFromClient();
        assertEquals("$/cancelRequest", cancel.get("method").getAsString());
        assertEquals(req.get("id"), cancel.getAsJsonObject("params").get("id"));
        // A late answer is dropped without harm.
        sendToClient("{\"jsonrpc\":\"2.0\",\"id\":" + req.get("id") + ",\"result\":1}");
        var next = conn.request("next", null, Duration.ofSeconds(5));
        JsonObject r = nextFromClient();
        sendToClient("{\"jsonrpc\":\"2.0\",\"id\":" + r.get("id") + ",\"result\":7}");
        assertEquals(7, next.get(5, TimeUnit.SECONDS).getAsInt());
    }

    @Test
    void notificationsArriveInOrderAndPeerRequestsAreAnswered() throws Exception {
        List<String> seen = new CopyOnWriteArrayList<>();
        CountDownLatch three = new CountDownLatch(3);
        conn.setNotificationHandler((m, p) -> {
            seen.add(m + ":" + p);
            three.countDown();
        });
        conn.setRequestHandler((m, p) -> {
            if (m.equals("boom")) {
                throw new RpcException(-1, "no", null);
            }
            return null;
        });
        conn.start();
        sendToClient("{\"jsonrpc\":\"2.0\",\"method\":\"n\",\"params\":1}");
        sendToClient("{\"jsonrpc\":\"2.0\",\"method\":\"window/workDoneProgress/create\",\"id\":\"t1\",\"params\":{}}");
        sendToClient("not json at all");
        sendToClient("{\"jsonrpc\":\"2.0\",\"method\":\"n\",\"params\":2}");
        sendToClient("{\"jsonrpc\":\"2.0\",\"method\":\"boom\",\"id\":9}");
        sendToClient("{\"jsonrpc\":\"2.0\",\"method\":\"n\"}");
        assertTrue(three.await(5, TimeUnit.SECONDS));
        assertEquals(List.of("n:1", "n:2", "n:null"), seen);
        JsonObject ok = nextFromClient();
        assertEquals("t1", ok.get("id").getAsString());
        assertTrue(ok.has("result") && ok.get("result").isJsonNull(), ok.toString());
        JsonObject err = nextFromClient();
        assertEquals(-1, err.getAsJsonObject("error").get("code").getAsInt());
    }

    @Test
    void theEndOfTheStreamFailsPendingRequestsAndTellsTheListener() throws Exception {
        CountDownLatch closed = new CountDownLatch(1);
        Throwable[] why = new Throwable[1];
        conn.setCloseListener(t -> {
            why[0] = t;
            closed.countDown();
        });
        conn.start();
        var pending = conn.request("a", null, Duration.ofSeconds(30));
        nextFromClient();
        toClient.close();
        var e = assertThrows(java.util.concurrent.ExecutionException.class, () -> pending.get(5, TimeUnit.SECONDS));
        assertTrue(e.getCause() instanceof ConnectionClosedException, String.valueOf(e.getCause()));
        assertTrue(closed.await(5, TimeUnit.SECONDS));
        assertTrue(why[0] instanceof ConnectionClosedException);
        assertFalse(conn.isOpen());
        assertThrows(ConnectionClosedException.class, () -> conn.call("b", null, Duration.ofSeconds(1)));
        JsonElement ignored = null;
        assertEquals(null, ignored);
    }
}
