package dev.tether.core.e2e;

import dev.tether.core.daemon.TetherClient;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * A daemon of the test's own: its runtime, state and data directories in a temporary folder,
 * so the socket, the log and the layer copy never touch the user's.
 */
final class PrivateDaemon implements AutoCloseable {
    final Path dir;
    final Map<String, String> env;

    PrivateDaemon(String prefix) throws IOException {
        dir = Files.createTempDirectory(prefix);
        env = new HashMap<>(Fixtures.parentEnv());
        env.remove("TETHER_SOCKET");
        env.remove("TETHER_DAEMON_VERSION");
        for (String[] d : new String[][] {{"XDG_RUNTIME_DIR", "run"}, {"XDG_STATE_HOME", "state"}, {"XDG_DATA_HOME", "data"}}) {
            Path p = dir.resolve(d[1]);
            Files.createDirectories(p);
            env.put(d[0], p.toString());
        }
        // The no-attach check is not what these tests are about; keep it out of the way.
        env.put("TETHER_ATTACH_DEADLINE_MS", "60000");
    }

    Path socket() {
        return dir.resolve("run/tether/daemon-v0.sock");
    }

    TetherClient.Options options() {
        TetherClient.Options o = new TetherClient.Options();
        o.tetherPath = Fixtures.tether().toString();
        o.env = env;
        o.clientName = "tether-jetbrains-test";
        o.requestTimeout = Duration.ofSeconds(30);
        o.launchTimeout = Duration.ofSeconds(120);
        o.workspaceFolders = List.of();
        return o;
    }

    /** {@code tether ARGS} with this daemon's environment. */
    Fixtures.Ran cli(String... args) throws IOException, InterruptedException {
        List<String> argv = new java.util.ArrayList<>(List.of(Fixtures.tether().toString()));
        argv.addAll(List.of(args));
        return Fixtures.run(argv, env, dir, 60);
    }

    /** Stops the daemon (if one runs) and removes the folder. */
    @Override
    public void close() {
        try {
            cli("daemon", "stop");
        } catch (IOException | InterruptedException ignored) {
            // nothing more to do
        }
        Fixtures.deleteTree(dir);
    }
}
