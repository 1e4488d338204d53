package dev.tether.core.launch;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import com.google.gson.JsonObject;
import dev.tether.core.Json;
import dev.tether.core.protocol.PrepareLaunchResult;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;

/** Mapping to launch objects and back, with made-up daemon answers (the real ones: e2e tests). */
class LaunchPatchTest {
    static final Map<String, String> PARENT = Map.of("PATH", "/usr/bin:/bin", "HOME", "/home/u", "KEEP", "1");

    static PrepareLaunchResult result(String sessionId, JsonObject launch, Map<String, String> env, List<String> unset,
            String diagnostics) {
        String json = "{\"diagnostics\":" + diagnostics + "}";
        var d = Json.GSON.fromJson(json, dev.tether.core.protocol.DoctorResult.class).diagnostics();
        return new PrepareLaunchResult(sessionId, launch, env, unset, d);
    }

    @Test
    void everyKindMapsToTheFieldsTheDoctorReads() {
        RunConfiguration java = new RunConfiguration(RunKind.JAVA_APPLICATION, "App");
        java.executable = "/opt/jdk/bin/java";
        java.target = "com.example.Main";
        java.classPath = List.of("/w/out");
        java.executableArgs = List.of("-Xmx64m");
        java.programArgs = List.of("a");
        java.workingDirectory = "/w";
        java.env.put("A", "1");
        JsonObject l = LaunchMapper.toLaunch(java, PARENT);
        assertEquals("{\"type\":\"java\",\"request\":\"launch\",\"name\":\"App\",\"cwd\":\"/w\",\"env\":{\"A\":\"1\"},"
                + "\"program\":\"/opt/jdk/bin/java\",\"mainClass\":\"com.example.Main\",\"vmArgs\":[\"-Xmx64m\"],"
                + "\"classPaths\":[\"/w/out\"],\"args\":[\"a\"]}", l.toString());

        RunConfiguration gradle = new RunConfiguration(RunKind.GRADLE, "run");
        gradle.executable = "./gradlew";
        gradle.workingDirectory = "/w";
        gradle.tasks = List.of("run");
        gradle.programArgs = List.of("--args=x");
        l = LaunchMapper.toLaunch(gradle, PARENT);
        assertEquals("/w/gradlew", l.get("program").getAsString());
        assertEquals("[\"run\",\"--args=x\"]", l.get("args").toString());

        RunConfiguration go = new RunConfiguration(RunKind.GO, "go");
        go.target = "/w/cmd/app";
        go.goToolArgs = List.of("-tags", "x");
        l = LaunchMapper.toLaunch(go, PARENT);
        assertEquals("debug", l.get("mode").getAsString());
        assertEquals("[\"-tags\",\"x\"]", l.get("buildFlags").toString());

        RunConfiguration py = new RunConfiguration(RunKind.PYTHON, "py");
        py.executable = "sh"; // found on PATH
        py.module = true;
        py.target = "pkg.main";
        l = LaunchMapper.toLaunch(py, PARENT);
        assertTrue(l.get("python").getAsString().endsWith("/sh"), l.toString());
        assertEquals("pkg.main", l.get("module").getAsString());
        assertFalse(l.has("program"));

        RunConfiguration node = new RunConfiguration(RunKind.NODE, "node");
        node.executable = "no-such-node-here";
        node.target = "/w/index.js";
        node.executableArgs = List.of("--inspect");
        l = LaunchMapper.toLaunch(node, PARENT);
        assertEquals("no-such-node-here", l.get("runtimeExecutable").getAsString());
        assertEquals("[\"--inspect\"]", l.get("runtimeArgs").toString());
    }

    @Test
    void thePatchSetsAndRemovesVariablesAlsoFromTheParentEnvironment() {
        RunConfiguration rc = new RunConfiguration(RunKind.PYTHON, "py");
        rc.executable = "/usr/bin/python3";
        rc.target = "/w/a.py";
        rc.env.put("MINE", "x");
        JsonObject sent = LaunchMapper.toLaunch(rc, PARENT);
        JsonObject back = sent.deepCopy();
        var r = result("s1", back, Map.of("LD_PRELOAD", "/l/layer.so", "POD", "1"), List.of("KEEP"), "[]");
        LaunchPatch.Patched p = LaunchPatch.apply(rc, sent, r);
        assertFalse(p.stopped());
        assertEquals("s1", p.sessionId());
        Map<String, String> env = p.config().effectiveEnv(PARENT);
        assertEquals("1", env.get("POD"));
        assertEquals("x", env.get("MINE"));
        assertFalse(env.containsKey("KEEP"));
        assertEquals("/home/u", env.get("HOME"));
        // The original is untouched.
        assertTrue(rc.envUnset.isEmpty());
        assertFalse(rc.env.containsKey("POD"));
    }

    @Test
    void aParentLdPreloadIsKeptAfterTheLayer() {
        RunConfiguration rc = new RunConfiguration(RunKind.NODE, "n");
        rc.env.put("LD_PRELOAD", "/l/layer.so");
        Map<String, String> parent = Map.of("LD_PRELOAD", "/usr/lib/libasan.so");
        assertEquals("/l/layer.so:/usr/lib/libasan.so", rc.effectiveEnv(parent).get("LD_PRELOAD"));
        rc.passParentEnv = false;
        assertEquals("/l/layer.so", rc.effectiveEnv(parent).get("LD_PRELOAD"));
    }

    @Test
    void changedFieldsMapBackToTheConfiguration() {
        // What the macOS doctor does to a script: the interpreter becomes a copy and the script
        // goes before the arguments.
        RunConfiguration rc = new RunConfiguration(RunKind.GRADLE, "g");
        rc.executable = "/w/gradlew";
        rc.tasks = List.of("run");
        JsonObject sent = LaunchMapper.toLaunch(rc, PARENT);
        JsonObject back = sent.deepCopy();
        back.addProperty("program", "/cache/sh");
        back.add("args", Json.strings(List.of("/w/gradlew", "run")));
        back.addProperty("cwd", "/elsewhere");
        LaunchPatch.Patched p = LaunchPatch.apply(rc, sent, result("s", back, Map.of(), List.of(), "[]"));
        assertEquals("/cache/sh", p.config().executable);
        assertEquals(List.of("/w/gradlew"), p.config().executableArgs);
        assertEquals(List.of("/cache/sh", "/w/gradlew", "run"), CommandLines.of(p.config(), PARENT).get(0).argv());
        assertEquals("/elsewhere", p.config().workingDirectory);

        RunConfiguration py = new RunConfiguration(RunKind.PYTHON, "p");
        py.executable = "/usr/bin/python3";
        py.target = "a.py";
        sent = LaunchMapper.toLaunch(py, PARENT);
        back = sent.deepCopy();
        back.add("python", Json.strings(List.of("/cache/python3", "-X", "dev")));
        p = LaunchPatch.apply(py, sent, result("s", back, Map.of(), List.of(), "[]"));
        assertEquals("/cache/python3", p.config().executable);

        RunConfiguration go = new RunConfiguration(RunKind.GO, "go");
        go.target = "/w";
        go.goToolArgs = List.of("-tags", "x y");
        sent = LaunchMapper.toLaunch(go, PARENT);
        back = sent.deepCopy();
        back.add("buildFlags", Json.strings(List.of("-tags", "x y", "-ldflags=-linkmode external")));
        p = LaunchPatch.apply(go, sent, result("s", back, Map.of(), List.of(), "[]"));
        assertEquals(List.of("-tags", "x y", "-ldflags=-linkmode external"), p.config().goToolArgs);
        // A daemon that answered the string form is read as a shell would.
        back.addProperty("buildFlags", "-tags 'x y' -ldflags='-linkmode external'");
        p = LaunchPatch.apply(go, sent, result("s", back, Map.of(), List.of(), "[]"));
        assertEquals(List.of("-tags", "x y", "-ldflags=-linkmode external"), p.config().goToolArgs);
    }

    @Test
    void anErrorStopsTheLaunchAndChangesNothing() {
        RunConfiguration rc = new RunConfiguration(RunKind.GO, "go");
        rc.target = "/w";
        JsonObject sent = LaunchMapper.toLaunch(rc, PARENT);
        var r = result(null, sent, Map.of(), List.of(),
                "[{\"id\":\"go-cgo-disabled\",\"severity\":\"error\",\"message\":\"CGO_ENABLED=0\","
                        + "\"fix\":{\"applied\":false,\"description\":\"set it to 1\",\"edit\":{\"launch.env\":{}}}}]");
        LaunchPatch.Patched p = LaunchPatch.apply(rc, sent, r);
        assertTrue(p.stopped());
        assertTrue(p.config().env.isEmpty());
        assertEquals("[error] CGO_ENABLED=0 (go-cgo-disabled)\n    fix: set it to 1", p.diagnostics().get(0).describe());
    }

    @Test
    void commandLinesPerKind() {
        RunConfiguration go = new RunConfiguration(RunKind.GO, "my app");
        go.executable = "/go/bin/go";
        go.target = ".";
        go.workingDirectory = "/w";
        go.goToolArgs = List.of("-ldflags=-linkmode external");
        go.programArgs = List.of("x");
        go.env.put("LD_PRELOAD", "/l/layer.so");
        var steps = CommandLines.of(go, PARENT);
        assertEquals(List.of("/go/bin/go", "build", "-o", "/w/go_build_my_app", "-ldflags=-linkmode external", "."),
                steps.get(0).argv());
        assertFalse(steps.get(0).env().containsKey("LD_PRELOAD"));
        assertEquals(List.of("/w/go_build_my_app", "x"), steps.get(1).argv());
        assertEquals("/l/layer.so", steps.get(1).env().get("LD_PRELOAD"));
        go.goMode = RunConfiguration.GoMode.RUN;
        assertEquals(List.of("/go/bin/go", "run", "-ldflags=-linkmode external", ".", "x"),
                CommandLines.of(go, PARENT).get(0).argv());

        RunConfiguration py = new RunConfiguration(RunKind.PYTHON, "p");
        py.executable = "python3";
        py.executableArgs = List.of("-u");
        py.module = true;
        py.target = "http.server";
        assertEquals(List.of("python3", "-u", "-m", "http.server"), CommandLines.of(py, PARENT).get(0).argv());
    }
}
