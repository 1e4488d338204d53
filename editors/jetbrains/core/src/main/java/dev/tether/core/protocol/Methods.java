package dev.tether.core.protocol;

/** The method names of the editor protocol (schemas/editor-protocol.json). */
public final class Methods {
    public static final String INITIALIZE = "initialize";
    public static final String INITIALIZED = "initialized";
    public static final String SHUTDOWN = "shutdown";
    public static final String EXIT = "exit";
    public static final String PREPARE_LAUNCH = "tether/prepareLaunch";
    public static final String DOCTOR = "tether/doctor";
    public static final String LIST_TARGETS = "tether/listTargets";
    public static final String SESSIONS = "tether/sessions";
    public static final String STOP_SESSION = "tether/stopSession";
    public static final String LAUNCH_ENDED = "tether/launchEnded";
    public static final String EXPLAIN_PATH = "tether/explainPath";
    public static final String HANDOVER = "tether/handover";
    public static final String STOP_DAEMON = "tether/stopDaemon";
    public static final String SESSION_CHANGED = "tether/sessionChanged";
    public static final String LOG_MESSAGE = "window/logMessage";
    public static final String SHOW_MESSAGE = "window/showMessage";
    public static final String PUBLISH_DIAGNOSTICS = "textDocument/publishDiagnostics";
    /** The version of the {@code tether/*} methods this client speaks. */
    public static final int PROTOCOL_VERSION = 1;

    private Methods() {}
}
