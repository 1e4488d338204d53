package dev.tether.core.e2e;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertNotNull;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import dev.tether.core.daemon.TetherClient;
import dev.tether.core.launch.CommandLines;
import dev.tether.core.launch.LaunchMapper;
import dev.tether.core.launch.LaunchPatch;
import dev.tether.core.launch.RunConfiguration;
import dev.tether.core.launch.RunKind;
import dev.tether.core.protocol.Diagnostic;
import dev.tether.core.protocol.PrepareLaunchResult;
import dev.tether.core.protocol.ProcessInfo;
import dev.tether.core.protocol.SessionSnapshot;
import dev.tether.core.protocol.SessionState;
import dev.tether.core.protocol.Target;
import dev.tether.core.session.SessionStore;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.function.Predicate;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestInstance;
import org.junit.jupiter.api.TestMethodOrder;

/**
 * Every run-configuration kind against a real {@code tether daemon} (private to the test) and a
 * local pod: the configuration is sent as a launch, the daemon's patch applied, the resulting
 * command line run, and the program must see the target's variable and a file only the target
 * has; the session model must show the process that joined, and end with the run.
 */
@TestInstance(TestInstance.Lifecycle.PER_CLASS)
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class RunConfigurationsTest {
    private PrivateDaemon daemon;
    private LocalPod pod;
    private TetherClient client;
    private Path ws;
    private Map<String, String> parent;
    private final List<SessionStore.Update> updates = new CopyOnWriteArrayList<>();

    @BeforeAll
    void start() throws Exception {
        assertTrue(Files.isExecutable(Fixtures.tether()), "build the workspace first: cargo build --workspace");
        assertFalse(Files.exists(Path.of("/app/message.txt")), "this machine must not have the pod's file");
        daemon = new PrivateDaemon("tether-jb-e2e-");
        ws = daemon.dir.resolve("workspace");
        Fixtures.workspace(ws);
        parent = Fixtures.parentEnv();
        pod = LocalPod.start("jb" + Long.toHexString(System.nanoTime() & 0xffff));
        client = new TetherClient(daemon.options());
        client.addListener(new TetherClient.Listener() {
            @Override
            public void sessionChanged(SessionStore.Update u) {
                updates.add(u);
            }
        });
    }

    @AfterAll
    void stop() throws Exception {
        if (client != null) {
            client.close();
        }
        if (daemon != null) {
            daemon.close();
        }
        if (pod != null) {
            pod.close();
        }
    }

    @Test
    @Order(1)
    void theFirstCallStartsThePrivateDaemon() throws Exception {
        assertFalse(Files.exists(daemon.socket()));
        String version = client.connect();
        assertTrue(Files.exists(daemon.socket()), "the daemon listens at " + daemon.socket());
        assertEquals(version, client.binary().version());
        assertTrue(client.capabilities().methods().containsAll(List.of("tether/prepareLaunch", "tether/doctor",
                "tether/listTargets", "tether/sessions", "tether/stopSession", "tether/launchEnded",
                "tether/explainPath")), client.capabilities().methods().toString());
        assertTrue(client.isConnected());
    }

    @Test
    @Order(2)
    void thePickerOffersThePod() throws Exception {
        List<Target> targets = client.listTargets(null).targets();
        Target t = targets.stream().filter(x -> x.path().equals(pod.target())).findFirst().orElse(null);
        assertNotNull(t, "pid " + pod.pid + " in " + targets.size() + " targets");
        assertEquals("process", t.kind());
        assertTrue(t.label().startsWith(pod.target()));
    }

    /** Prepares, patches and runs {@code rc}; returns the program's output after checking the session. */
    private String launch(RunConfiguration rc, String wantExecutable) throws Exception {
        JsonObject launch = LaunchMapper.toLaunch(rc, parent);
        PrepareLaunchResult r = client.prepareLaunch(
                new TetherClient.LaunchRequest(launch, ws, null, pod.target()));
        LaunchPatch.Patched p = LaunchPatch.apply(rc, launch, r);
        assertFalse(p.stopped(), () -> "the launch stopped: " + p.diagnostics().stream().map(Diagnostic::describe).toList());
        assertNotNull(p.sessionId());
        assertTrue(p.config().env.containsKey("LD_PRELOAD"), p.config().env.keySet().toString());
        assertEquals(Fixtures.GREETING, p.config().env.get("POD_GREETING"));
        String output = "";
        for (CommandLines.Step step : CommandLines.of(p.config(), parent)) {
            Fixtures.Ran ran = Fixtures.run(step.argv(), step.env(),
                    step.workingDirectory() == null ? ws : Path.of(step.workingDirectory()), 180);
            assertEquals(0, ran.status(), () -> step.argv() + " failed:\n" + ran.output());
            output = ran.output();
        }
        String out = output;
        assertTrue(out.contains("greeting=" + Fixtures.GREETING + "\n"), () -> rc.kind + " saw:\n" + out);
        assertTrue(out.contains("message=" + Fixtures.MESSAGE + "\n"), () -> rc.kind + " saw:\n" + out);

        // The session model: the program joined, and the session ends with the run.
        SessionSnapshot s = await(p.sessionId(), x -> x.processes().stream()
                .anyMatch(pr -> !pr.skipped() && pr.executable().endsWith(wantExecutable)));
        assertEquals(pod.target(), s.target());
        assertEquals(rc.name, s.launchName());
        client.launchEnded(p.sessionId());
        SessionSnapshot ended = await(p.sessionId(), x -> x.state() == SessionState.ENDED);
        assertNotNull(ended.endReason());
        return out;
    }

    /** Waits for {@code tether/sessionChanged} to bring a snapshot of {@code id} that {@code want} accepts. */
    private SessionSnapshot await(String id, Predicate<SessionSnapshot> want) throws InterruptedException {
        long deadline = System.nanoTime() + 15_000_000_000L;
        while (System.nanoTime() < deadline) {
            SessionSnapshot s = client.sessions().get(id);
            if (s != null && want.test(s)) {
                return s;
            }
            Thread.sleep(20);
        }
        SessionSnapshot s = client.sessions().get(id);
        throw new AssertionError("session " + id + " never got there; last snapshot: " + s + "; processes "
                + (s == null ? "-" : s.processes().stream().map(ProcessInfo::executable).toList()));
    }

    @Test
    @Order(10)
    void javaApplication() throws Exception {
        RunConfiguration rc = new RunConfiguration(RunKind.JAVA_APPLICATION, "Probe (Java)");
        rc.executable = Fixtures.java();
        rc.executableArgs = List.of("-Xshare:auto", "-XX:TieredStopAtLevel=1");
        rc.classPath = List.of(ws.resolve("build/classes").toString());
        rc.target = "Probe";
        rc.programArgs = List.of("one", "two");
        rc.workingDirectory = ws.toString();
        String out = launch(rc, "/java");
        assertTrue(out.contains("args=one two\n"), out);
    }

    @Test
    @Order(11)
    void gradle() throws Exception {
        RunConfiguration rc = new RunConfiguration(RunKind.GRADLE, "Probe [run]");
        rc.executable = "./gradlew";
        rc.tasks = List.of("run");
        rc.programArgs = List.of("--args=from-gradle");
        rc.workingDirectory = ws.toString();
        rc.env.put("JAVA_HOME", Fixtures.javaHome());
        String out = launch(rc, "/java");
        assertTrue(out.contains("args=from-gradle\n"), out);
    }

    @Test
    @Order(12)
    void maven() throws Exception {
        RunConfiguration rc = new RunConfiguration(RunKind.MAVEN, "Probe [exec:exec]");
        rc.executable = ws.resolve("mvnw").toString();
        rc.tasks = List.of("exec:exec");
        rc.programArgs = List.of("-Dexec.mainClass=Probe", "-Dexec.args=from-maven");
        rc.workingDirectory = ws.toString();
        rc.env.put("JAVA_HOME", Fixtures.javaHome());
        String out = launch(rc, "/java");
        assertTrue(out.contains("args=from-maven\n"), out);
    }

    @Test
    @Order(13)
    void goBuildThenRun() throws Exception {
        RunConfiguration rc = new RunConfiguration(RunKind.GO, "goprobe");
        rc.executable = Fixtures.go();
        rc.target = ws.resolve("goprobe").toString();
        rc.workingDirectory = ws.resolve("goprobe").toString();
        rc.goToolArgs = List.of("-ldflags=-X main.unused=1 -s");
        rc.goOutput = ws.resolve("goprobe/goprobe.bin").toString();
        rc.programArgs = List.of("x", "y");
        String out = launch(rc, "/goprobe.bin");
        assertTrue(out.contains("args=x y\n"), out);
    }

    @Test
    @Order(13)
    void goRun() throws Exception {
        // `go run` with the session's environment: the toolchain's own processes (the C linker)
        // load the layer too, and the program built in a temporary directory joins the session.
        RunConfiguration rc = new RunConfiguration(RunKind.GO, "goprobe (go run)");
        rc.executable = Fixtures.go();
        rc.goMode = RunConfiguration.GoMode.RUN;
        rc.target = ".";
        rc.workingDirectory = ws.resolve("goprobe").toString();
        rc.programArgs = List.of("r");
        String out = launch(rc, "/goprobe");
        assertTrue(out.contains("args=r\n"), out);
    }

    @Test
    @Order(14)
    void python() throws Exception {
        RunConfiguration rc = new RunConfiguration(RunKind.PYTHON, "probe.py");
        rc.executable = Fixtures.python();
        rc.executableArgs = List.of("-u");
        rc.target = ws.resolve("probe.py").toString();
        rc.programArgs = List.of("p");
        rc.workingDirectory = ws.toString();
        String out = launch(rc, Path.of(Fixtures.python()).toRealPath().getFileName().toString());
        assertTrue(out.contains("args=p\n"), out);
    }

    @Test
    @Order(15)
    void pythonModule() throws Exception {
        RunConfiguration rc = new RunConfiguration(RunKind.PYTHON, "probe (module)");
        rc.executable = Fixtures.python();
        rc.module = true;
        rc.target = "probe";
        rc.workingDirectory = ws.toString();
        launch(rc, Path.of(Fixtures.python()).toRealPath().getFileName().toString());
    }

    @Test
    @Order(16)
    void node() throws Exception {
        RunConfiguration rc = new RunConfiguration(RunKind.NODE, "probe.js");
        rc.executable = Fixtures.node();
        rc.executableArgs = List.of("--no-warnings");
        rc.target = ws.resolve("probe.js").toString();
        rc.programArgs = List.of("n1");
        rc.workingDirectory = ws.toString();
        rc.env.put("NODE_OPTIONS", "--max-old-space-size=256");
        String out = launch(rc, "/node");
        assertTrue(out.contains("args=n1\n"), out);
    }

    @Test
    @Order(20)
    void sessionChangedNotificationsWereSeen() {
        assertTrue(updates.stream().anyMatch(SessionStore.Update::isNew));
        assertTrue(updates.stream().anyMatch(u -> u.session().state() == SessionState.READY));
        assertTrue(client.sessions().list().size() >= 5);
        assertEquals(0, client.sessions().liveCount());
    }

    @Test
    @Order(21)
    void stopSessionEndsALiveSession() throws Exception {
        RunConfiguration rc = new RunConfiguration(RunKind.NODE, "never run");
        rc.executable = Fixtures.node();
        rc.target = ws.resolve("probe.js").toString();
        JsonObject launch = LaunchMapper.toLaunch(rc, parent);
        PrepareLaunchResult r = client.prepareLaunch(new TetherClient.LaunchRequest(launch, ws, null, pod.target()));
        assertNotNull(r.sessionId());
        await(r.sessionId(), SessionSnapshot::isLive);
        assertTrue(client.stopSession(r.sessionId(), false));
        await(r.sessionId(), s -> s.state() == SessionState.ENDED);
        assertFalse(client.stopSession(r.sessionId(), false));
    }

    @Test
    @Order(22)
    void anErrorStopsTheLaunchWithTheDoctorsFix() throws Exception {
        RunConfiguration rc = new RunConfiguration(RunKind.GO, "cgo off");
        rc.target = ws.resolve("goprobe").toString();
        rc.env.put("CGO_ENABLED", "0");
        JsonObject launch = LaunchMapper.toLaunch(rc, parent);
        PrepareLaunchResult r = client.prepareLaunch(new TetherClient.LaunchRequest(launch, ws, null, pod.target()));
        LaunchPatch.Patched p = LaunchPatch.apply(rc, launch, r);
        assertTrue(p.stopped());
        Diagnostic d = p.diagnostics().stream().filter(x -> x.id().equals("go-cgo-disabled")).findFirst().orElseThrow();
        assertTrue(d.isError());
        assertNotNull(d.fix());
        assertFalse(d.fix().applied());
        assertFalse(p.config().env.containsKey("LD_PRELOAD"));
        // tether/doctor says the same without starting anything.
        assertTrue(client.doctor(launch, ws, null).diagnostics().stream().anyMatch(x -> x.id().equals("go-cgo-disabled")));
    }

    @Test
    @Order(23)
    void explainPathSaysWhereAFileComesFrom() throws Exception {
        var e = client.explainPath("/app/message.txt", ws, null);
        assertEquals("remote", e.read().route());
        assertEquals("local", client.explainPath("probe.py", ws, null).read().route());
        assertTrue(e.text().contains("/app/message.txt"), e.text());
    }
}
