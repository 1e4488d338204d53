package dev.tether.core.daemon;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertTrue;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** The same paths as daemon/src/paths.rs. */
class DaemonPathsTest {
    @Test
    void socketFollowsTheDaemonsRules() {
        assertEquals(Path.of("/run/user/7/tether/daemon-v0.sock"),
                DaemonPaths.socket(Map.of("XDG_RUNTIME_DIR", "/run/user/7"), 7, "0"));
        assertEquals(Path.of("/tmp/tether-7/daemon-v1.sock"), DaemonPaths.socket(Map.of("XDG_RUNTIME_DIR", ""), 7, "1"));
        assertEquals(Path.of("/x.sock"), DaemonPaths.socket(Map.of("TETHER_SOCKET", "/x.sock", "XDG_RUNTIME_DIR", "/r"), 7, "0"));
        assertEquals(Path.of("/h/.local/state/tether/daemon.log"), DaemonPaths.logFile(Map.of("HOME", "/h")));
        assertEquals(Path.of("/s/tether/daemon.log"), DaemonPaths.logFile(Map.of("HOME", "/h", "XDG_STATE_HOME", "/s")));
        assertEquals("0", DaemonPaths.major("0.1.0"));
        assertEquals("12", DaemonPaths.major("12"));
        assertTrue(DaemonPaths.currentUid() >= 0);
    }

    @Test
    void theDaemonStartsInASessionOfItsOwn() {
        List<String> cmd = DaemonStarter.command(new TetherBinary(Path.of("/opt/tether")), Map.of("PATH", "/usr/bin:/bin"));
        assertEquals(List.of("/opt/tether", "daemon"), cmd.subList(cmd.size() - 2, cmd.size()));
        if (cmd.size() == 3) {
            assertTrue(cmd.get(0).endsWith("/setsid"), cmd.toString());
        }
    }
}
