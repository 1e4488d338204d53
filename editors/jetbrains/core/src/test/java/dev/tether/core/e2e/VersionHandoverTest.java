package dev.tether.core.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import dev.tether.core.daemon.TetherClient;
import dev.tether.core.launch.LaunchMapper;
import dev.tether.core.launch.RunConfiguration;
import dev.tether.core.launch.RunKind;
import dev.tether.core.protocol.PrepareLaunchResult;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import org.junit.jupiter.api.Test;

/**
 * The version policy, as the CLI and {@code tether lsp} apply it: a daemon of another version is
 * asked to hand over; without live sessions it stops and a current one starts, with sessions it
 * serves this client (with a warning) and stops once they have ended.
 */
class VersionHandoverTest {
    /** A {@code tether} that is version {@code 0.0.1-old}: a wrapper that says so and makes its daemon say so. */
    static Path oldTether(Path dir) throws Exception {
        Path w = dir.resolve("old-tether");
        Files.writeString(w, "#!/bin/sh\n"
                + "if [ \"$1\" = --version ]; then echo 'tether 0.0.1-old'; exit 0; fi\n"
                + "TETHER_DAEMON_VERSION=0.0.1-old exec '" + Fixtures.tether() + "' \"$@\"\n");
        w.toFile().setExecutable(true);
        return w;
    }

    @Test
    void anIdleDaemonOfAnotherVersionHandsOver() throws Exception {
        try (PrivateDaemon daemon = new PrivateDaemon("tether-jb-version-")) {
            TetherClient.Options oldOptions = daemon.options();
            oldOptions.tetherPath = oldTether(daemon.dir).toString();
            try (TetherClient old = new TetherClient(oldOptions); TetherClient current = new TetherClient(daemon.options())) {
                assertEquals("0.0.1-old", old.connect());
                String mine = current.binary().version();
                assertEquals(mine, current.connect());
                assertNotEquals(old.capabilities().pid(), current.capabilities().pid());
                ReconnectTest.waitFor("the old client to see its daemon go", () -> !old.isConnected());
            }
        }
    }

    @Test
    void aDaemonWithSessionsServesUntilTheyEnd() throws Exception {
        Process target = new ProcessBuilder("sleep", "300").start();
        try (PrivateDaemon daemon = new PrivateDaemon("tether-jb-version-busy-")) {
            TetherClient.Options oldOptions = daemon.options();
            oldOptions.tetherPath = oldTether(daemon.dir).toString();
            try (TetherClient old = new TetherClient(oldOptions); TetherClient current = new TetherClient(daemon.options())) {
                RunConfiguration rc = new RunConfiguration(RunKind.NODE, "busy");
                rc.executable = Fixtures.node();
                rc.target = Fixtures.fixture("probe.js").toString();
                JsonObject launch = LaunchMapper.toLaunch(rc, Fixtures.parentEnv());
                PrepareLaunchResult r = old.prepareLaunch(
                        new TetherClient.LaunchRequest(launch, daemon.dir, null, "pid:" + target.pid()));
                assertNotNull(r.sessionId(), () -> r.diagnostics().toString());

                List<String> warnings = new CopyOnWriteArrayList<>();
                current.addListener(new TetherClient.Listener() {
                    @Override
                    public void message(int type, String text) {
                        if (type == 2) {
                            warnings.add(text);
                        }
                    }
                });
                assertEquals("0.0.1-old", current.connect());
                assertTrue(warnings.stream().anyMatch(w -> w.contains("serves 1 session")), warnings.toString());
                assertEquals(1, current.listSessions().sessions().stream().filter(s -> s.isLive()).count());

                // The session ends: the old daemon retires, and the next call gets a current one.
                old.launchEnded(r.sessionId());
                ReconnectTest.waitFor("the old daemon to retire", () -> !current.isConnected());
                assertEquals(current.binary().version(), current.listSessions().version());
            }
        } finally {
            target.destroy();
        }
    }
}
