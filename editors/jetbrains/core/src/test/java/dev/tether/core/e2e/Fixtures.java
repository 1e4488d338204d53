package dev.tether.core.e2e;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Comparator;
import java.util.HashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import javax.tools.ToolProvider;

/** Where the Rust build and the tools are, and the fixture programs in a workspace folder. */
final class Fixtures {
    /** What the pod's target has and this machine has not (testkit/examples/pod.rs). */
    static final String GREETING = "hello from inside the e2e pod";
    static final String MESSAGE = "this file exists only in the pod";

    private Fixtures() {}

    static Path repo() {
        String r = System.getenv("TETHER_REPO");
        Path p = r != null ? Path.of(r) : Path.of("").toAbsolutePath();
        while (p != null && !Files.exists(p.resolve("editors/jetbrains/build.sh"))) {
            p = p.getParent();
        }
        if (p == null) {
            throw new IllegalStateException("cannot find the repository (set TETHER_REPO)");
        }
        return p;
    }

    static Path tether() {
        return repo().resolve("target/debug/tether");
    }

    static Path podExample() {
        return repo().resolve("target/debug/examples/pod");
    }

    static Path fixture(String name) {
        return repo().resolve("editors/jetbrains/core/src/test/fixtures").resolve(name);
    }

    /** The JVM running the tests (an absolute path, not a shell wrapper). */
    static String java() {
        return ProcessHandle.current().info().command().orElse("java");
    }

    static String javaHome() {
        return Path.of(java()).getParent().getParent().toString();
    }

    /** A real interpreter, not a version manager's shell shim (so the program itself joins the session). */
    static String python() {
        return Files.isExecutable(Path.of("/usr/bin/python3")) ? "/usr/bin/python3" : "python3";
    }

    static String node() {
        return Files.isExecutable(Path.of("/usr/bin/node")) ? "/usr/bin/node" : "node";
    }

    /** The go binary itself ({@code go env GOROOT}/bin/go), past any shim. */
    static String go() throws IOException, InterruptedException {
        Process p = new ProcessBuilder("go", "env", "GOROOT").redirectErrorStream(true).start();
        String root = new String(p.getInputStream().readAllBytes(), StandardCharsets.UTF_8).trim();
        p.waitFor(60, TimeUnit.SECONDS);
        Path go = Path.of(root, "bin", "go");
        return Files.isExecutable(go) ? go.toString() : "go";
    }

    /** The IDE's environment as the tests model it. */
    static Map<String, String> parentEnv() {
        Map<String, String> env = new HashMap<>(System.getenv());
        env.remove("POD_GREETING");
        env.remove("LD_PRELOAD");
        return env;
    }

    /** Copies the fixtures into {@code ws} and compiles Probe.java to ws/build/classes. */
    static void workspace(Path ws) throws IOException {
        Files.createDirectories(ws.resolve("build/classes"));
        for (String f : List.of("Probe.java", "probe.py", "probe.js", "gradlew", "mvnw")) {
            Files.copy(fixture(f), ws.resolve(f));
        }
        ws.resolve("gradlew").toFile().setExecutable(true);
        ws.resolve("mvnw").toFile().setExecutable(true);
        Files.createDirectories(ws.resolve("goprobe"));
        for (String f : List.of("go.mod", "main.go")) {
            Files.copy(fixture("goprobe/" + f), ws.resolve("goprobe/" + f));
        }
        int rc = ToolProvider.getSystemJavaCompiler().run(null, null, null, "-d",
                ws.resolve("build/classes").toString(), ws.resolve("Probe.java").toString());
        if (rc != 0) {
            throw new IOException("javac Probe.java failed");
        }
    }

    static void deleteTree(Path p) {
        if (p == null || !Files.exists(p)) {
            return;
        }
        try (Stream<Path> s = Files.walk(p)) {
            s.sorted(Comparator.reverseOrder()).forEach(x -> x.toFile().delete());
        } catch (IOException ignored) {
            // best effort
        }
    }

    /** Runs a command to its end; returns its exit status and output (stdout and stderr). */
    record Ran(int status, String output) {}

    static Ran run(List<String> argv, Map<String, String> env, Path cwd, long timeoutSeconds)
            throws IOException, InterruptedException {
        ProcessBuilder pb = new ProcessBuilder(argv).redirectErrorStream(true)
                .redirectInput(ProcessBuilder.Redirect.from(new java.io.File("/dev/null")));
        if (cwd != null) {
            pb.directory(cwd.toFile());
        }
        if (env != null) {
            pb.environment().clear();
            pb.environment().putAll(env);
        }
        Process p = pb.start();
        byte[][] out = new byte[1][];
        Thread reader = new Thread(() -> {
            try {
                out[0] = p.getInputStream().readAllBytes();
            } catch (IOException e) {
                out[0] = new byte[0];
            }
        });
        reader.start();
        if (!p.waitFor(timeoutSeconds, TimeUnit.SECONDS)) {
            p.descendants().forEach(ProcessHandle::destroyForcibly);
            p.destroyForcibly();
            reader.join(5000);
            throw new IOException(argv + " did not finish within " + timeoutSeconds + " s; output so far: "
                    + (out[0] == null ? "" : new String(out[0], StandardCharsets.UTF_8)));
        }
        reader.join();
        return new Ran(p.exitValue(), new String(out[0], StandardCharsets.UTF_8));
    }
}
