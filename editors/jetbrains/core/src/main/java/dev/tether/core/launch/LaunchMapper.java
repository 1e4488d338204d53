package dev.tether.core.launch;

import com.google.gson.JsonObject;
import dev.tether.core.Json;
import dev.tether.core.daemon.Executables;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/**
 * A run configuration as the launch object {@code tether/prepareLaunch} takes: the JetBrains
 * equivalent of a VS Code launch configuration, with the field names the daemon's doctor reads.
 *
 * <ul>
 *   <li>Java: {@code {"type":"java", "program": JVM, "mainClass", "vmArgs", "classPaths", "args"}}</li>
 *   <li>Gradle / Maven: {@code {"type":"gradle"|"maven", "program": gradle|mvn, "args": options + tasks + arguments, "tasks"}}</li>
 *   <li>Go: {@code {"type":"go", "mode":"debug", "program": package directory or file, "buildFlags": tool arguments (a list), "args"}}</li>
 *   <li>Python: {@code {"type":"python", "python": interpreter, "pythonArgs", "program" | "module", "args"}}</li>
 *   <li>Node.js: {@code {"type":"node", "runtimeExecutable": node, "runtimeArgs", "program", "args"}}</li>
 * </ul>
 * All have {@code request: "launch"}, {@code name}, {@code cwd} and {@code env} (the
 * configuration's own variables). Executables are sent as absolute paths (found on the
 * configuration's PATH), because the daemon's PATH may not be the IDE's.
 */
public final class LaunchMapper {
    private LaunchMapper() {}

    /** The launch field that names the executable, per kind ({@code null}: none). */
    static String executableField(RunKind k) {
        return switch (k) {
            case JAVA_APPLICATION, GRADLE, MAVEN -> "program";
            case PYTHON -> "python";
            case NODE -> "runtimeExecutable";
            case GO -> null;
        };
    }

    /** The launch field whose words follow the executable, per kind ({@code null}: none). */
    static String argsField(RunKind k) {
        return switch (k) {
            case JAVA_APPLICATION, GRADLE, MAVEN -> "args";
            case NODE -> "runtimeArgs";
            case PYTHON, GO -> null;
        };
    }

    /** The launch field that names what runs, per kind. */
    static String targetField(RunConfiguration rc) {
        return switch (rc.kind) {
            case JAVA_APPLICATION -> "mainClass";
            case PYTHON -> rc.module ? "module" : "program";
            case GO, NODE -> "program";
            case GRADLE, MAVEN -> null;
        };
    }

    /** The launch object for {@code rc}; {@code parentEnv} is the IDE's environment. */
    public static JsonObject toLaunch(RunConfiguration rc, Map<String, String> parentEnv) {
        Map<String, String> env = rc.effectiveEnv(parentEnv);
        JsonObject l = new JsonObject();
        l.addProperty("type", rc.kind.debugType());
        l.addProperty("request", "launch");
        l.addProperty("name", rc.name == null ? rc.kind.debugType() : rc.name);
        if (rc.workingDirectory != null && !rc.workingDirectory.isEmpty()) {
            l.addProperty("cwd", rc.workingDirectory);
        }
        JsonObject e = new JsonObject();
        rc.env.forEach(e::addProperty);
        l.add("env", e);
        String exe = resolve(rc.executable, rc.workingDirectory, env);
        switch (rc.kind) {
            case JAVA_APPLICATION -> {
                l.addProperty("program", exe);
                l.addProperty("mainClass", rc.target);
                l.add("vmArgs", Json.strings(rc.executableArgs));
                l.add("classPaths", Json.strings(rc.classPath));
                l.add("args", Json.strings(rc.programArgs));
            }
            case GRADLE, MAVEN -> {
                l.addProperty("program", exe);
                List<String> args = new ArrayList<>(rc.executableArgs);
                args.addAll(rc.tasks);
                args.addAll(rc.programArgs);
                l.add("args", Json.strings(args));
                l.add("tasks", Json.strings(rc.tasks));
            }
            case GO -> {
                l.addProperty("mode", "debug");
                l.addProperty("program", rc.target);
                l.add("buildFlags", Json.strings(rc.goToolArgs));
                l.add("args", Json.strings(rc.programArgs));
            }
            case PYTHON -> {
                l.addProperty("python", exe);
                l.add("pythonArgs", Json.strings(rc.executableArgs));
                l.addProperty(rc.module ? "module" : "program", rc.target);
                l.add("args", Json.strings(rc.programArgs));
            }
            case NODE -> {
                l.addProperty("runtimeExecutable", exe);
                l.add("runtimeArgs", Json.strings(rc.executableArgs));
                l.addProperty("program", rc.target);
                l.add("args", Json.strings(rc.programArgs));
            }
        }
        return l;
    }

    /** An executable as an absolute path: relative to the working directory, or found on PATH. */
    static String resolve(String exe, String cwd, Map<String, String> env) {
        if (exe == null || exe.isEmpty()) {
            return exe;
        }
        if (exe.contains("/")) {
            Path p = Path.of(exe);
            if (!p.isAbsolute() && cwd != null) {
                p = Path.of(cwd).resolve(p);
            }
            return p.normalize().toString();
        }
        Path found = Executables.find(exe, env);
        return found == null ? exe : found.toString();
    }
}
