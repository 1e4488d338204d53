package dev.tether.core.launch;

import com.google.gson.JsonElement;
import com.google.gson.JsonObject;
import dev.tether.core.Json;
import dev.tether.core.go.GoBuildFlags;
import dev.tether.core.protocol.Diagnostic;
import dev.tether.core.protocol.PrepareLaunchResult;
import java.util.ArrayList;
import java.util.List;
import java.util.Objects;

/**
 * Applies a {@code tether/prepareLaunch} answer to a run configuration: the session's
 * environment ({@code env} set, {@code envUnset} removed, also from the IDE's environment),
 * and every launch field the daemon changed, mapped back to the configuration's fields (the
 * executable replaced by a macOS copy and the words put before the arguments, the Go tool
 * arguments with {@code -linkmode external}, the working directory).
 */
public final class LaunchPatch {
    private LaunchPatch() {}

    /**
     * The outcome: the configuration to run, the session it joins, the findings, whether the
     * launch must stop, and one line per change for the log.
     */
    public record Patched(RunConfiguration config, String sessionId, List<Diagnostic> diagnostics, boolean stopped,
            List<String> changes) {}

    /** {@code sent} is the launch object that was sent ({@link LaunchMapper#toLaunch}). */
    public static Patched apply(RunConfiguration rc, JsonObject sent, PrepareLaunchResult result) {
        List<String> changes = new ArrayList<>();
        RunConfiguration c = rc.copy();
        if (result.stopped()) {
            return new Patched(c, result.sessionId(), result.diagnostics(), true, changes);
        }
        c.env.putAll(result.env());
        for (String u : result.envUnset()) {
            c.env.remove(u);
            c.envUnset.add(u);
        }
        changes.add("environment: " + result.env().size() + " variable(s) set"
                + (result.envUnset().isEmpty() ? "" : ", " + result.envUnset().size() + " removed"));
        JsonElement launch = result.launch();
        if (launch == null || !launch.isJsonObject()) {
            return new Patched(c, result.sessionId(), result.diagnostics(), false, changes);
        }
        JsonObject patched = launch.getAsJsonObject();

        String exeField = LaunchMapper.executableField(c.kind);
        if (exeField != null && changed(sent, patched, exeField)) {
            String exe = executable(patched.get(exeField));
            if (exe != null) {
                changes.add("executable: " + c.executable + " → " + exe);
                c.executable = exe;
            }
        }
        String argsField = LaunchMapper.argsField(c.kind);
        if (argsField != null && changed(sent, patched, argsField)) {
            List<String> before = Json.stringList(sent, argsField);
            List<String> after = Json.stringList(patched, argsField);
            if (before != null && after != null) {
                applyArgs(c, before, after, changes);
            }
        }
        String targetField = LaunchMapper.targetField(c);
        if (targetField != null && changed(sent, patched, targetField)) {
            String t = Json.string(patched, targetField);
            if (t != null) {
                changes.add(targetField + ": " + c.target + " → " + t);
                c.target = t;
            }
        }
        if (c.kind == RunKind.GO && changed(sent, patched, "buildFlags")) {
            try {
                List<String> flags = GoBuildFlags.words(patched.get("buildFlags"));
                changes.add("Go tool arguments: " + c.goToolArgs + " → " + flags);
                c.goToolArgs = flags;
            } catch (GoBuildFlags.InvalidFlagsException | RuntimeException e) {
                changes.add("Go tool arguments left unchanged: the daemon's buildFlags cannot be read (" + e.getMessage() + ")");
            }
        }
        if (changed(sent, patched, "cwd")) {
            String cwd = Json.string(patched, "cwd");
            if (cwd != null) {
                changes.add("working directory: " + c.workingDirectory + " → " + cwd);
                c.workingDirectory = cwd;
            }
        }
        return new Patched(c, result.sessionId(), result.diagnostics(), false, changes);
    }

    private static boolean changed(JsonObject sent, JsonObject patched, String field) {
        return patched.has(field) && !Objects.equals(sent.get(field), patched.get(field));
    }

    /** An executable field: a string, or (Python) a list of the interpreter and its options. */
    private static String executable(JsonElement e) {
        if (e == null) {
            return null;
        }
        if (e.isJsonArray() && !e.getAsJsonArray().isEmpty()) {
            return e.getAsJsonArray().get(0).getAsString();
        }
        return e.isJsonPrimitive() ? e.getAsString() : null;
    }

    /** Words the daemon put before the arguments go before the configuration's first ones. */
    private static void applyArgs(RunConfiguration c, List<String> before, List<String> after, List<String> changes) {
        int extra = after.size() - before.size();
        if (extra > 0 && after.subList(extra, after.size()).equals(before)) {
            List<String> prefix = after.subList(0, extra);
            List<String> exeArgs = new ArrayList<>(prefix);
            exeArgs.addAll(c.executableArgs);
            changes.add("words before the arguments: " + prefix);
            c.executableArgs = exeArgs;
            return;
        }
        changes.add("arguments: " + before + " → " + after);
        switch (c.kind) {
            case NODE -> c.executableArgs = new ArrayList<>(after);
            case JAVA_APPLICATION -> c.programArgs = new ArrayList<>(after);
            default -> {
                c.executableArgs = new ArrayList<>();
                c.tasks = new ArrayList<>();
                c.programArgs = new ArrayList<>(after);
            }
        }
    }
}
