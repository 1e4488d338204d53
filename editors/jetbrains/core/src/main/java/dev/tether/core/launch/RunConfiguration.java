package dev.tether.core.launch;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * A run configuration of any supported kind, without the IDE: what the plugin reads from the
 * IDE's configuration, sends to the daemon (see {@link LaunchMapper}) and writes back after the
 * patch (see {@link LaunchPatch}). The command line it stands for is {@link CommandLines#of}.
 *
 * <table>
 *   <caption>What the fields mean per kind</caption>
 *   <tr><th>kind</th><th>executable</th><th>executableArgs</th><th>target</th><th>tasks</th></tr>
 *   <tr><td>Java</td><td>the JVM</td><td>VM options</td><td>main class</td><td>-</td></tr>
 *   <tr><td>Gradle / Maven</td><td>gradle, gradlew / mvn, mvnw</td><td>options before the tasks</td><td>-</td><td>tasks / goals</td></tr>
 *   <tr><td>Go</td><td>go</td><td>-</td><td>package directory or file</td><td>-</td></tr>
 *   <tr><td>Python</td><td>interpreter</td><td>interpreter options</td><td>script, or module</td><td>-</td></tr>
 *   <tr><td>Node.js</td><td>node</td><td>node options</td><td>script</td><td>-</td></tr>
 * </table>
 */
public final class RunConfiguration {
    /** How GoLand runs a Go build configuration. */
    public enum GoMode {
        /** {@code go build -o OUTPUT [tool args] TARGET}, then {@code OUTPUT [args]} (GoLand's default). */
        BUILD_AND_RUN,
        /** {@code go run [tool args] TARGET [args]}. */
        RUN
    }

    public RunKind kind;
    public String name;
    public String executable;
    public List<String> executableArgs = new ArrayList<>();
    public String target;
    /** Python: {@code target} is a module ({@code -m}). */
    public boolean module;
    /** Java: the class path. */
    public List<String> classPath = new ArrayList<>();
    /** Gradle tasks, Maven goals. */
    public List<String> tasks = new ArrayList<>();
    public List<String> programArgs = new ArrayList<>();
    public String workingDirectory;
    /** The configuration's own variables ("Environment variables"). */
    public Map<String, String> env = new LinkedHashMap<>();
    /** Whether the IDE's environment is passed too ("Include system environment variables"). */
    public boolean passParentEnv = true;
    /** Variables to remove, also from the parent environment (set by the patch). */
    public Set<String> envUnset = new LinkedHashSet<>();
    /** GoLand's "Go tool arguments", as the IDE splits them. */
    public List<String> goToolArgs = new ArrayList<>();
    public GoMode goMode = GoMode.BUILD_AND_RUN;
    /** Go: where {@code go build} writes the binary. */
    public String goOutput;

    public RunConfiguration(RunKind kind, String name) {
        this.kind = kind;
        this.name = name;
    }

    public RunConfiguration copy() {
        RunConfiguration c = new RunConfiguration(kind, name);
        c.executable = executable;
        c.executableArgs = new ArrayList<>(executableArgs);
        c.target = target;
        c.module = module;
        c.classPath = new ArrayList<>(classPath);
        c.tasks = new ArrayList<>(tasks);
        c.programArgs = new ArrayList<>(programArgs);
        c.workingDirectory = workingDirectory;
        c.env = new LinkedHashMap<>(env);
        c.passParentEnv = passParentEnv;
        c.envUnset = new LinkedHashSet<>(envUnset);
        c.goToolArgs = new ArrayList<>(goToolArgs);
        c.goMode = goMode;
        c.goOutput = goOutput;
        return c;
    }

    /**
     * The environment the program starts with: the IDE's (when passed), the configuration's
     * variables over it, without {@link #envUnset}. When tether's {@code LD_PRELOAD} replaces
     * one of the parent environment, the parent's libraries are kept after the layer, as the
     * daemon does for a launch's own {@code LD_PRELOAD}.
     */
    public Map<String, String> effectiveEnv(Map<String, String> parent) {
        Map<String, String> out = new LinkedHashMap<>();
        if (passParentEnv) {
            out.putAll(parent);
        }
        out.putAll(env);
        String mine = env.get("LD_PRELOAD");
        String theirs = passParentEnv ? parent.get("LD_PRELOAD") : null;
        if (mine != null && theirs != null && !theirs.isBlank() && !mine.equals(theirs)) {
            List<String> have = List.of(mine.split("[: ]"));
            StringBuilder merged = new StringBuilder(mine);
            for (String lib : theirs.split("[: ]")) {
                if (!lib.isEmpty() && !have.contains(lib)) {
                    merged.append(':').append(lib);
                }
            }
            out.put("LD_PRELOAD", merged.toString());
        }
        for (String u : envUnset) {
            out.remove(u);
        }
        return out;
    }
}
