package dev.tether.core.daemon;

import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;

/**
 * Where the daemon keeps its files, computed exactly as the daemon does (daemon/src/paths.rs),
 * from an explicit environment so that a client can point at any daemon (tests use private
 * XDG directories):
 * <ul>
 *   <li>socket: {@code $TETHER_SOCKET}, else {@code $XDG_RUNTIME_DIR/tether/daemon-v<major>.sock},
 *       else {@code /tmp/tether-<uid>/daemon-v<major>.sock};</li>
 *   <li>log: {@code $XDG_STATE_HOME/tether/daemon.log}, else {@code ~/.local/state/tether/daemon.log}.</li>
 * </ul>
 */
public final class DaemonPaths {
    private DaemonPaths() {}

    private static String nonEmpty(Map<String, String> env, String name) {
        String v = env.get(name);
        return v == null || v.isEmpty() ? null : v;
    }

    public static Path runtimeDir(Map<String, String> env, long uid) {
        String xdg = nonEmpty(env, "XDG_RUNTIME_DIR");
        return xdg != null ? Path.of(xdg, "tether") : Path.of("/tmp/tether-" + uid);
    }

    /** The socket of the daemon whose version has major number {@code major}. */
    public static Path socket(Map<String, String> env, long uid, String major) {
        String explicit = nonEmpty(env, "TETHER_SOCKET");
        if (explicit != null) {
            return Path.of(explicit);
        }
        return runtimeDir(env, uid).resolve("daemon-v" + major + ".sock");
    }

    public static Path stateDir(Map<String, String> env) {
        String xdg = nonEmpty(env, "XDG_STATE_HOME");
        if (xdg != null) {
            return Path.of(xdg, "tether");
        }
        String home = nonEmpty(env, "HOME");
        return Path.of(home == null ? "/" : home, ".local", "state", "tether");
    }

    /** The daemon's log, for messages that say where to look. */
    public static Path logFile(Map<String, String> env) {
        return stateDir(env).resolve("daemon.log");
    }

    /** The major number of a version ({@code 0.1.0} → {@code 0}). */
    public static String major(String version) {
        String v = version.trim();
        int dot = v.indexOf('.');
        return dot < 0 ? v : v.substring(0, dot);
    }

    /** This process's effective uid (the owner of {@code /proc/self}), else the login uid. */
    public static long currentUid() {
        try {
            Object uid = Files.getAttribute(Path.of("/proc/self"), "unix:uid");
            if (uid instanceof Integer i) {
                return i;
            }
        } catch (IOException | UnsupportedOperationException | IllegalArgumentException ignored) {
            // not Linux
        }
        try {
            Object uid = Files.getAttribute(Path.of(System.getProperty("user.home")), "unix:uid");
            if (uid instanceof Integer i) {
                return i;
            }
        } catch (IOException | UnsupportedOperationException | IllegalArgumentException ignored) {
            // no unix attributes
        }
        return -1;
    }
}
