package dev.tether.core.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotEquals;
import static org.junit.jupiter.api.Assertions.assertThrows;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.tether.core.daemon.DaemonStarter;
import dev.tether.core.daemon.TetherClient;
import dev.tether.core.rpc.ConnectionClosedException;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.BooleanSupplier;
import org.junit.jupiter.api.Test;

/** The client outlives its daemon: {@code tether daemon stop}, then calls and reconnection work. */
class ReconnectTest {
    static void waitFor(String what, BooleanSupplier ok) throws InterruptedException {
        long deadline = System.nanoTime() + 15_000_000_000L;
        while (!ok.getAsBoolean()) {
            if (System.nanoTime() > deadline) {
                throw new AssertionError("timed out waiting for " + what);
            }
            Thread.sleep(10);
        }
    }

    @Test
    void aCallAfterTheDaemonStoppedStartsANewOneAndABackgroundReconnectFindsARestartedOne() throws Exception {
        try (PrivateDaemon daemon = new PrivateDaemon("tether-jb-reconnect-");
                TetherClient client = new TetherClient(daemon.options())) {
            List<Boolean> events = new CopyOnWriteArrayList<>();
            client.addListener(new TetherClient.Listener() {
                @Override
                public void connectionChanged(boolean connected, String version) {
                    events.add(connected);
                }
            });
            client.listSessions();
            long first = client.capabilities().pid();
            assertEquals(List.of(true), events);

            // The user stops the daemon: the client notices without a call.
            Fixtures.Ran stop = daemon.cli("daemon", "stop");
            assertEquals(0, stop.status(), stop.output());
            waitFor("the disconnection", () -> events.size() == 2);
            assertFalse(events.get(1));
            assertFalse(client.isConnected());
            // Nothing restarts it in the background.
            Thread.sleep(600);
            assertEquals(2, events.size());

            // The next call starts a new daemon and succeeds.
            assertEquals(client.binary().version(), client.listSessions().version());
            long second = client.capabilities().pid();
            assertNotEquals(first, second);
            assertEquals(List.of(true, false, true), events);

            // Someone else restarts it (the CLI, another IDE): the client reconnects by itself.
            assertEquals(0, daemon.cli("daemon", "stop").status());
            waitFor("the second disconnection", () -> events.size() == 4);
            Process started = DaemonStarter.start(client.binary(), daemon.env);
            waitFor("the background reconnection", () -> events.size() == 5);
            assertTrue(events.get(4));
            assertTrue(client.isConnected());
            assertNotEquals(second, client.capabilities().pid());
            assertEquals(started.pid(), client.capabilities().pid());
            assertTrue(client.doctor(new com.google.gson.JsonObject(), daemon.dir, null).diagnostics().stream()
                    .anyMatch(d -> d.id().equals("launch-no-type")));
        }
    }

    @Test
    void twoIdesStartingAtOnceEndUpWithOneDaemon() throws Exception {
        try (PrivateDaemon daemon = new PrivateDaemon("tether-jb-race-");
                TetherClient a = new TetherClient(daemon.options());
                TetherClient b = new TetherClient(daemon.options())) {
            java.util.concurrent.CountDownLatch go = new java.util.concurrent.CountDownLatch(1);
            java.util.concurrent.ExecutorService pool = java.util.concurrent.Executors.newFixedThreadPool(2);
            try {
                var fa = pool.submit(() -> {
                    go.await();
                    return a.connect();
                });
                var fb = pool.submit(() -> {
                    go.await();
                    return b.connect();
                });
                go.countDown();
                assertEquals(fa.get(), fb.get());
            } finally {
                pool.shutdownNow();
            }
            assertEquals(a.capabilities().pid(), b.capabilities().pid());
        }
    }

    @Test
    void withoutAutoStartACallSaysNoDaemonRuns() throws Exception {
        try (PrivateDaemon daemon = new PrivateDaemon("tether-jb-noauto-")) {
            TetherClient.Options o = daemon.options();
            o.autoStart = false;
            try (TetherClient client = new TetherClient(o)) {
                ConnectionClosedException e = assertThrows(ConnectionClosedException.class, client::listSessions);
                assertTrue(e.getMessage().contains("no tether daemon listens at " + daemon.socket()), e.getMessage());
                client.stopDaemon(); // nothing runs: nothing to do
            }
        }
    }
}
