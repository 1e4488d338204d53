package dev.tether.core.daemon;

import com.google.gson.JsonArray;
import com.google.gson.JsonElement;
import com.google.gson.JsonNull;
import com.google.gson.JsonObject;
import dev.tether.core.Json;
import dev.tether.core.protocol.DoctorResult;
import dev.tether.core.protocol.ExplainPathResult;
import dev.tether.core.protocol.HandoverResult;
import dev.tether.core.protocol.ListTargetsResult;
import dev.tether.core.protocol.Methods;
import dev.tether.core.protocol.PrepareLaunchResult;
import dev.tether.core.protocol.SessionSnapshot;
import dev.tether.core.protocol.SessionsResult;
import dev.tether.core.protocol.StopSessionResult;
import dev.tether.core.protocol.TetherCapabilities;
import dev.tether.core.rpc.ConnectionClosedException;
import dev.tether.core.rpc.JsonRpcConnection;
import dev.tether.core.rpc.UnixSocketTransport;
import dev.tether.core.session.SessionStore;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.Executors;
import java.util.concurrent.ScheduledExecutorService;
import java.util.concurrent.TimeUnit;

/**
 * The IDE's connection to the user's tether daemon: the daemon socket, {@code initialize}, the
 * version policy, typed {@code tether/*} calls, the session model kept current from
 * {@code tether/sessionChanged}, and reconnection.
 *
 * <ul>
 *   <li><b>Starting.</b> A call finds the daemon's socket; when nobody listens there (and
 *       {@link Options#autoStart}) it starts {@code tether daemon} detached and connects once
 *       the socket listens (see {@link DaemonStarter}).</li>
 *   <li><b>Versions.</b> As the CLI and {@code tether lsp} do: when the daemon's version differs
 *       from the {@code tether} binary's, the client asks it to hand over
 *       ({@code tether/handover}); a daemon without live sessions stops and the client starts
 *       one of its own version, one that serves sessions is used this time (with a warning) and
 *       retires when they end.</li>
 *   <li><b>Reconnecting.</b> When the connection ends (the daemon stopped or restarted), pending
 *       calls fail with {@link ConnectionClosedException}, listeners hear
 *       {@link Listener#connectionChanged}, and the client reconnects in the background as soon
 *       as a daemon listens again (it never starts one in the background: a daemon the user
 *       stopped stays stopped until the next call). A call made while disconnected reconnects
 *       (starting the daemon when needed); a call whose connection broke before its answer is
 *       sent once more on a new connection (the daemon leaves no session behind for a client
 *       that left mid-request).</li>
 * </ul>
 */
public final class TetherClient implements AutoCloseable {
    /** How the client finds and starts the daemon. */
    public static final class Options {
        /** The {@code tether} executable: a path, or a name looked up on PATH; {@code null}: {@code tether}. */
        public String tetherPath;
        /** The environment: PATH to find {@code tether}, the XDG directories, and the daemon's own environment. */
        public Map<String, String> env = System.getenv();
        /** The socket; {@code null}: computed from {@link #env} as the daemon does. */
        public Path socket;
        /** Start a daemon when none runs. */
        public boolean autoStart = true;
        /** The timeout of ordinary requests. */
        public Duration requestTimeout = Duration.ofSeconds(30);
        /** The timeout of {@code tether/prepareLaunch} (it may start an agent). */
        public Duration launchTimeout = Duration.ofMinutes(3);
        /** How long a started daemon has to listen. */
        public Duration startTimeout = Duration.ofSeconds(10);
        public String clientName = "tether-jetbrains";
        public String clientVersion = "0";
        /** Receive {@code tether/sessionChanged}. */
        public boolean sessionNotifications = true;
        /** The project folders: the daemon validates their config files and publishes diagnostics. */
        public List<Path> workspaceFolders = List.of();
        /** Reconnect in the background after the daemon went away. */
        public boolean reconnect = true;
        /** The first pause between background reconnection attempts (doubled up to 5 s). */
        public Duration reconnectDelay = Duration.ofMillis(200);
    }

    /** What the client tells the IDE. Called on the client's own threads, never under its locks. */
    public interface Listener {
        /** Connected (after {@code initialize} and a fresh session list) or disconnected. */
        default void connectionChanged(boolean connected, String daemonVersion) {}

        /** A session changed ({@code update.session()} is the whole snapshot). */
        default void sessionChanged(SessionStore.Update update) {}

        /** The whole session list was replaced (after connecting). */
        default void sessionsReset(List<SessionSnapshot> sessions) {}

        /** {@code window/logMessage} and {@code window/showMessage}: LSP message types (1 error .. 4 log). */
        default void message(int type, String text) {}

        /** {@code textDocument/publishDiagnostics} for a config file. */
        default void configDiagnostics(String uri, JsonArray diagnostics) {}

        /** {@code $/progress} while an agent starts. */
        default void progress(JsonElement token, JsonObject value) {}
    }

    /** The parameters of {@code tether/prepareLaunch}. */
    public record LaunchRequest(JsonObject launch, Path workspaceFolder, Path configPath, String target,
            String workDoneToken) {
        public LaunchRequest(JsonObject launch, Path workspaceFolder, Path configPath, String target) {
            this(launch, workspaceFolder, configPath, target, null);
        }

        JsonObject params() {
            JsonObject p = new JsonObject();
            p.add("launch", launch);
            p.addProperty("workspaceFolder", workspaceFolder.toAbsolutePath().toString());
            if (configPath != null) {
                p.addProperty("configPath", configPath.toString());
            }
            if (target != null && !target.isBlank()) {
                p.addProperty("target", target);
            }
            if (workDoneToken != null) {
                p.addProperty("workDoneToken", workDoneToken);
            }
            addKubeconfig(p);
            return p;
        }
    }

    private final Options options;
    private final SessionStore store = new SessionStore();
    private final List<Listener> listeners = new CopyOnWriteArrayList<>();
    private final Object connectLock = new Object();
    private final ScheduledExecutorService background;
    private volatile JsonRpcConnection conn;
    private volatile String daemonVersion;
    private volatile TetherCapabilities capabilities;
    private volatile boolean closed;
    private volatile boolean reconnectScheduled;
    private TetherBinary binary;

    public TetherClient(Options options) {
        this.options = options;
        this.background = Executors.newSingleThreadScheduledExecutor(r -> {
            Thread t = new Thread(r, "tether-client-reconnect");
            t.setDaemon(true);
            return t;
        });
    }

    public void addListener(Listener l) {
        listeners.add(l);
    }

    public void removeListener(Listener l) {
        listeners.remove(l);
    }

    /** The sessions as last reported by the daemon. */
    public SessionStore sessions() {
        return store;
    }

    public boolean isConnected() {
        JsonRpcConnection c = conn;
        return c != null && c.isOpen();
    }

    /** The connected daemon's version; {@code null} before the first connection. */
    public String daemonVersion() {
        return daemonVersion;
    }

    /** What the connected daemon advertised; {@code null} before the first connection. */
    public TetherCapabilities capabilities() {
        return capabilities;
    }

    /** The {@code tether} executable (located once). */
    public synchronized TetherBinary binary() throws IOException {
        if (binary == null) {
            binary = TetherBinary.locate(options.tetherPath, options.env);
        }
        return binary;
    }

    /** The daemon socket this client uses. */
    public Path socket() throws IOException {
        if (options.socket != null) {
            return options.socket;
        }
        String major;
        try {
            major = DaemonPaths.major(binary().version());
        } catch (IOException e) {
            String explicit = options.env.get("TETHER_SOCKET");
            if (explicit != null && !explicit.isEmpty()) {
                return Path.of(explicit);
            }
            throw e;
        }
        return DaemonPaths.socket(options.env, DaemonPaths.currentUid(), major);
    }

    /** Connects now (starting the daemon when allowed and needed); returns the daemon's version. */
    public String connect() throws IOException {
        connection(options.autoStart);
        return daemonVersion;
    }

    private JsonRpcConnection connection(boolean mayStart) throws IOException {
        JsonRpcConnection c;
        synchronized (connectLock) {
            if (closed) {
                throw new ConnectionClosedException("the tether client is closed");
            }
            c = conn;
            if (c != null && c.isOpen()) {
                return c;
            }
            c = open(mayStart);
            conn = c;
        }
        String v = daemonVersion;
        List<SessionSnapshot> list = store.list();
        for (Listener l : listeners) {
            l.sessionsReset(list);
            l.connectionChanged(true, v);
        }
        return c;
    }

    private JsonRpcConnection open(boolean mayStart) throws IOException {
        Path socket = socket();
        JsonRpcConnection c = rawConnect(socket, mayStart);
        try {
            initialize(c);
            String expected = expectedVersion();
            if (expected != null && !expected.equals(daemonVersion)) {
                c = handover(c, socket, expected, mayStart);
            }
            c.notify(Methods.INITIALIZED, new JsonObject());
            SessionsResult all = Json.GSON.fromJson(
                    c.call(Methods.SESSIONS, null, options.requestTimeout), SessionsResult.class);
            store.replaceAll(all.sessions());
            return c;
        } catch (IOException | RuntimeException e) {
            c.close();
            throw e;
        }
    }

    private String expectedVersion() {
        try {
            return binary().version();
        } catch (IOException e) {
            return null; // no binary to compare with (an explicit socket): use what runs
        }
    }

    private JsonRpcConnection rawConnect(Path socket, boolean mayStart) throws IOException {
        JsonRpcConnection c;
        try {
            c = UnixSocketTransport.connect(socket, "tether");
        } catch (IOException e) {
            if (!mayStart) {
                throw new ConnectionClosedException("no tether daemon listens at " + socket, e);
            }
            c = DaemonStarter.startAndConnect(binary(), options.env, socket, options.startTimeout, "tether");
        }
        wire(c);
        c.start();
        return c;
    }

    private void wire(JsonRpcConnection c) {
        c.setNotificationHandler(this::onNotification);
        c.setRequestHandler((method, params) -> {
            if (method.equals("window/workDoneProgress/create")) {
                return JsonNull.INSTANCE;
            }
            if (method.equals("window/showMessageRequest") && params.isJsonObject()) {
                JsonObject p = params.getAsJsonObject();
                fireMessage(p.has("type") ? p.get("type").getAsInt() : 3, Json.string(p, "message"));
                return JsonNull.INSTANCE;
            }
            throw new dev.tether.core.rpc.RpcException(dev.tether.core.rpc.RpcException.METHOD_NOT_FOUND,
                    "the JetBrains client does not handle " + method, null);
        });
        c.setCloseListener(why -> onClosed(c, why));
    }

    private void initialize(JsonRpcConnection c) throws IOException {
        JsonObject p = new JsonObject();
        p.addProperty("processId", ProcessHandle.current().pid());
        JsonObject info = new JsonObject();
        info.addProperty("name", options.clientName);
        info.addProperty("version", options.clientVersion);
        p.add("clientInfo", info);
        JsonObject caps = new JsonObject();
        JsonObject window = new JsonObject();
        window.addProperty("workDoneProgress", true);
        caps.add("window", window);
        p.add("capabilities", caps);
        JsonObject init = new JsonObject();
        init.addProperty("sessionNotifications", options.sessionNotifications);
        p.add("initializationOptions", init);
        if (!options.workspaceFolders.isEmpty()) {
            JsonArray folders = new JsonArray();
            for (Path f : options.workspaceFolders) {
                JsonObject o = new JsonObject();
                o.addProperty("uri", f.toAbsolutePath().toUri().toString().replaceAll("/$", ""));
                o.addProperty("name", String.valueOf(f.getFileName()));
                folders.add(o);
            }
            p.add("workspaceFolders", folders);
        }
        JsonElement r = c.call(Methods.INITIALIZE, p, options.requestTimeout);
        JsonObject result = r.isJsonObject() ? r.getAsJsonObject() : new JsonObject();
        String version = null;
        if (result.has("serverInfo") && result.get("serverInfo").isJsonObject()) {
            version = Json.string(result.getAsJsonObject("serverInfo"), "version");
        }
        TetherCapabilities tc = null;
        try {
            JsonElement t = result.getAsJsonObject("capabilities").getAsJsonObject("experimental").get("tether");
            tc = Json.GSON.fromJson(t, TetherCapabilities.class);
        } catch (RuntimeException ignored) {
            // not a tether daemon, or an older one
        }
        if (tc == null) {
            throw new IOException("the process at the daemon socket is not a tether daemon (no tether capabilities)");
        }
        if (tc.protocol() != Methods.PROTOCOL_VERSION) {
            throw new IOException("the tether daemon speaks editor protocol " + tc.protocol() + ", this plugin "
                    + Methods.PROTOCOL_VERSION + "; update the plugin or tether");
        }
        daemonVersion = version != null ? version : tc.version();
        capabilities = tc;
    }

    /** The version policy (see the class comment). Returns the connection to use. */
    private JsonRpcConnection handover(JsonRpcConnection c, Path socket, String mine, boolean mayStart)
            throws IOException {
        JsonObject p = new JsonObject();
        p.addProperty("version", mine);
        HandoverResult h = Json.GSON.fromJson(c.call(Methods.HANDOVER, p, options.requestTimeout), HandoverResult.class);
        if (!h.accepted()) {
            fireMessage(2, "tether: the running daemon is version " + daemonVersion + " and serves " + h.sessions()
                    + " session(s); this tether is " + mine + ". It serves the IDE until its sessions end, then "
                    + mine + " takes over.");
            return c;
        }
        c.close();
        long deadline = System.nanoTime() + Duration.ofSeconds(10).toNanos();
        while (true) {
            try {
                UnixSocketTransport.connect(socket, "probe").close();
            } catch (IOException gone) {
                break;
            }
            if (System.nanoTime() > deadline) {
                throw new IOException("the tether daemon " + daemonVersion + " did not stop after a handover; run `tether daemon stop`");
            }
            DaemonStarter.sleep(10);
        }
        String old = daemonVersion;
        JsonRpcConnection fresh = rawConnect(socket, mayStart);
        try {
            initialize(fresh);
        } catch (IOException | RuntimeException e) {
            fresh.close();
            throw e;
        }
        if (!mine.equals(daemonVersion)) {
            fresh.close();
            throw new IOException("the tether daemon is version " + daemonVersion + " after a handover from " + old
                    + ", expected " + mine + "; run `tether daemon stop`");
        }
        return fresh;
    }

    private void onNotification(String method, JsonElement params) {
        switch (method) {
            case Methods.SESSION_CHANGED -> {
                SessionSnapshot s = Json.GSON.fromJson(params, SessionSnapshot.class);
                if (s == null || s.id() == null) {
                    return;
                }
                SessionStore.Update u = store.update(s);
                for (Listener l : listeners) {
                    l.sessionChanged(u);
                }
            }
            case Methods.LOG_MESSAGE, Methods.SHOW_MESSAGE -> {
                if (params.isJsonObject()) {
                    JsonObject p = params.getAsJsonObject();
                    fireMessage(p.has("type") ? p.get("type").getAsInt() : 4, Json.string(p, "message"));
                }
            }
            case Methods.PUBLISH_DIAGNOSTICS -> {
                if (params.isJsonObject() && params.getAsJsonObject().get("diagnostics") instanceof JsonArray a) {
                    String uri = Json.string(params.getAsJsonObject(), "uri");
                    for (Listener l : listeners) {
                        l.configDiagnostics(uri, a);
                    }
                }
            }
            case "$/progress" -> {
                if (params.isJsonObject() && params.getAsJsonObject().get("value") instanceof JsonObject v) {
                    for (Listener l : listeners) {
                        l.progress(params.getAsJsonObject().get("token"), v);
                    }
                }
            }
            default -> {
                // other notifications are not for this client
            }
        }
    }

    private void fireMessage(int type, String text) {
        if (text == null) {
            return;
        }
        for (Listener l : listeners) {
            l.message(type, text);
        }
    }

    private void onClosed(JsonRpcConnection c, Throwable why) {
        synchronized (connectLock) {
            if (conn != c) {
                return; // an old connection (handover), or already replaced
            }
            conn = null;
        }
        for (Listener l : listeners) {
            l.connectionChanged(false, daemonVersion);
        }
        if (!closed && options.reconnect) {
            scheduleReconnect(options.reconnectDelay.toMillis());
        }
    }

    private void scheduleReconnect(long delayMs) {
        synchronized (connectLock) {
            if (reconnectScheduled || closed) {
                return;
            }
            reconnectScheduled = true;
        }
        background.schedule(() -> {
            synchronized (connectLock) {
                reconnectScheduled = false;
            }
            if (closed || isConnected()) {
                return;
            }
            try {
                Path socket = socket();
                if (Files.exists(socket)) {
                    connection(false);
                    return;
                }
            } catch (IOException | RuntimeException notYet) {
                // try again later
            }
            scheduleReconnect(Math.min(delayMs * 2, 5000));
        }, delayMs, TimeUnit.MILLISECONDS);
    }

    /**
     * Calls {@code method}; on a connection that broke before the answer, once more on a new one.
     * Daemon errors are {@link dev.tether.core.rpc.RpcException}s, timeouts
     * {@link dev.tether.core.rpc.RequestTimeoutException}s.
     */
    public JsonElement call(String method, Object params, Duration timeout) throws IOException {
        ConnectionClosedException last = null;
        for (int attempt = 0; attempt < 2; attempt++) {
            JsonRpcConnection c = connection(options.autoStart);
            try {
                return c.call(method, params, timeout);
            } catch (ConnectionClosedException e) {
                last = e;
            }
        }
        throw last;
    }

    private <T> T call(String method, Object params, Duration timeout, Class<T> type) throws IOException {
        JsonElement r = call(method, params, timeout);
        T t = Json.GSON.fromJson(r, type);
        if (t == null) {
            throw new IOException(method + " answered no result");
        }
        return t;
    }

    /** {@code tether/prepareLaunch}: config, doctor, agent and session; the patched launch. */
    public PrepareLaunchResult prepareLaunch(LaunchRequest request) throws IOException {
        return call(Methods.PREPARE_LAUNCH, request.params(), options.launchTimeout, PrepareLaunchResult.class);
    }

    /** {@code tether/doctor}: the findings for a launch, nothing started. */
    public DoctorResult doctor(JsonObject launch, Path workspaceFolder, Path configPath) throws IOException {
        JsonObject p = new JsonObject();
        p.add("launch", launch);
        p.addProperty("workspaceFolder", workspaceFolder.toAbsolutePath().toString());
        if (configPath != null) {
            p.addProperty("configPath", configPath.toString());
        }
        return call(Methods.DOCTOR, p, options.requestTimeout, DoctorResult.class);
    }

    /**
     * The IDE's {@code KUBECONFIG}, when set: the daemon may have been started from another
     * environment, and must use the cluster this IDE means.
     */
    static void addKubeconfig(JsonObject params) {
        String kubeconfig = System.getenv("KUBECONFIG");
        if (kubeconfig != null && !kubeconfig.isEmpty()) {
            params.addProperty("kubeconfig", kubeconfig);
        }
    }

    /** {@code tether/listTargets}: what a target picker offers. */
    public ListTargetsResult listTargets(String namespace) throws IOException {
        JsonObject p = new JsonObject();
        if (namespace != null) {
            p.addProperty("namespace", namespace);
        }
        addKubeconfig(p);
        return call(Methods.LIST_TARGETS, p, options.requestTimeout, ListTargetsResult.class);
    }

    /** {@code tether/sessions}; also refreshes {@link #sessions()}. */
    public SessionsResult listSessions() throws IOException {
        SessionsResult r = call(Methods.SESSIONS, null, options.requestTimeout, SessionsResult.class);
        store.replaceAll(r.sessions());
        for (Listener l : listeners) {
            l.sessionsReset(store.list());
        }
        return r;
    }

    /** {@code tether/stopSession}. */
    public boolean stopSession(String sessionId, boolean terminate) throws IOException {
        JsonObject p = new JsonObject();
        p.addProperty("sessionId", sessionId);
        p.addProperty("terminate", terminate);
        return call(Methods.STOP_SESSION, p, options.requestTimeout, StopSessionResult.class).stopped();
    }

    /**
     * {@code tether/launchEnded} (a notification): the IDE's run ended. Without a connection
     * there is nothing to tell: a daemon that restarted has no such session.
     */
    public void launchEnded(String sessionId) throws IOException {
        JsonObject p = new JsonObject();
        p.addProperty("sessionId", sessionId);
        JsonRpcConnection c = conn;
        if (c != null && c.isOpen()) {
            c.notify(Methods.LAUNCH_ENDED, p);
        }
    }

    /** {@code tether/explainPath}: local or remote, and the rule. */
    public ExplainPathResult explainPath(String path, Path workspaceFolder, Path configPath) throws IOException {
        JsonObject p = new JsonObject();
        p.addProperty("path", path);
        if (workspaceFolder != null) {
            p.addProperty("workspaceFolder", workspaceFolder.toAbsolutePath().toString());
        }
        if (configPath != null) {
            p.addProperty("configPath", configPath.toString());
        }
        return call(Methods.EXPLAIN_PATH, p, options.requestTimeout, ExplainPathResult.class);
    }

    /** {@code tether/stopDaemon}, when one runs; the client reconnects once a daemon listens again. */
    public void stopDaemon() throws IOException {
        JsonRpcConnection c;
        try {
            c = connection(false);
        } catch (ConnectionClosedException none) {
            return;
        }
        try {
            c.call(Methods.STOP_DAEMON, null, options.requestTimeout);
        } catch (ConnectionClosedException gone) {
            // it stopped before answering
        }
    }

    /** Closes the connection; the daemon keeps running. */
    @Override
    public void close() {
        closed = true;
        background.shutdownNow();
        JsonRpcConnection c;
        synchronized (connectLock) {
            c = conn;
            conn = null;
        }
        if (c != null) {
            c.close();
        }
    }
}
