package dev.tether.core.daemon;

import dev.tether.core.rpc.JsonRpcConnection;
import dev.tether.core.rpc.UnixSocketTransport;
import java.io.File;
import java.io.IOException;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * Starts {@code tether daemon} detached from the IDE: in a session of its own ({@code setsid}
 * where it exists), stdin from /dev/null, output discarded (the daemon logs to its own file).
 * The daemon takes a lock beside its socket, so two clients starting one at the same moment
 * end up with a single daemon: a starter that lost the race exits 0 and the winner's socket
 * appears.
 */
public final class DaemonStarter {
    private DaemonStarter() {}

    /** The command line: {@code [setsid] TETHER daemon}. */
    static List<String> command(TetherBinary tether, Map<String, String> env) {
        List<String> cmd = new ArrayList<>();
        Path setsid = Executables.find("setsid", env);
        if (setsid == null) {
            for (String p : new String[] {"/usr/bin/setsid", "/bin/setsid"}) {
                if (new File(p).canExecute()) {
                    setsid = Path.of(p);
                    break;
                }
            }
        }
        if (setsid != null) {
            cmd.add(setsid.toString());
        }
        cmd.add(tether.path().toString());
        cmd.add("daemon");
        return cmd;
    }

    /** Starts a daemon process; {@code env} is its whole environment. */
    public static Process start(TetherBinary tether, Map<String, String> env) throws IOException {
        ProcessBuilder pb = new ProcessBuilder(command(tether, env));
        pb.environment().clear();
        pb.environment().putAll(env);
        pb.redirectInput(ProcessBuilder.Redirect.from(new File("/dev/null")));
        pb.redirectOutput(ProcessBuilder.Redirect.DISCARD);
        pb.redirectError(ProcessBuilder.Redirect.DISCARD);
        String home = env.get("HOME");
        pb.directory(new File(home != null && new File(home).isDirectory() ? home : "/"));
        return pb.start();
    }

    /**
     * Starts a daemon and connects to {@code socket} once it listens. Fails with the daemon's exit
     * status and its log's path when it does not come up within {@code limit}.
     */
    public static JsonRpcConnection startAndConnect(TetherBinary tether, Map<String, String> env, Path socket,
            Duration limit, String name) throws IOException {
        Process p = start(tether, env);
        long deadline = System.nanoTime() + limit.toNanos();
        while (true) {
            try {
                return UnixSocketTransport.connect(socket, name);
            } catch (IOException notYet) {
                // not listening yet
            }
            if (!p.isAlive()) {
                int status = p.exitValue();
                if (status != 0) {
                    throw new IOException("the tether daemon exited at start (status " + status + "); see "
                            + DaemonPaths.logFile(env) + " (`tether logs`)");
                }
                // Another daemon won the start-up race, or one was stopping: its socket appears
                // shortly, or we start another.
                sleep(50);
                try {
                    return UnixSocketTransport.connect(socket, name);
                } catch (IOException stillNot) {
                    p = start(tether, env);
                }
            }
            if (System.nanoTime() > deadline) {
                throw new IOException("the tether daemon did not come up within " + limit.toSeconds() + " s at "
                        + socket + "; see " + DaemonPaths.logFile(env));
            }
            sleep(10);
        }
    }

    static void sleep(long ms) throws IOException {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            throw new IOException("interrupted", e);
        }
    }
}
