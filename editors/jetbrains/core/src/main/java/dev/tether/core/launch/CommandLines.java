package dev.tether.core.launch;

import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * The command lines a run configuration stands for, as the IDE runs them: what the tests
 * execute after a patch, and what the plugin's log shows. A Go build is two steps: the build
 * (with the configuration's environment minus tether's {@code LD_PRELOAD}: the compiler and
 * linker are tools, not the program) and the program.
 */
public final class CommandLines {
    private CommandLines() {}

    /** One process to run. */
    public record Step(List<String> argv, Map<String, String> env, String workingDirectory) {}

    public static List<Step> of(RunConfiguration rc, Map<String, String> parentEnv) {
        Map<String, String> env = rc.effectiveEnv(parentEnv);
        String cwd = rc.workingDirectory;
        List<String> argv = new ArrayList<>();
        switch (rc.kind) {
            case JAVA_APPLICATION -> {
                argv.add(rc.executable);
                argv.addAll(rc.executableArgs);
                if (!rc.classPath.isEmpty()) {
                    argv.add("-cp");
                    argv.add(String.join(":", rc.classPath));
                }
                argv.add(rc.target);
                argv.addAll(rc.programArgs);
            }
            case GRADLE, MAVEN -> {
                argv.add(rc.executable);
                argv.addAll(rc.executableArgs);
                argv.addAll(rc.tasks);
                argv.addAll(rc.programArgs);
            }
            case PYTHON -> {
                argv.add(rc.executable);
                argv.addAll(rc.executableArgs);
                if (rc.module) {
                    argv.add("-m");
                }
                argv.add(rc.target);
                argv.addAll(rc.programArgs);
            }
            case NODE -> {
                argv.add(rc.executable);
                argv.addAll(rc.executableArgs);
                argv.add(rc.target);
                argv.addAll(rc.programArgs);
            }
            case GO -> {
                String go = rc.executable == null ? "go" : rc.executable;
                if (rc.goMode == RunConfiguration.GoMode.RUN) {
                    argv.add(go);
                    argv.add("run");
                    argv.addAll(rc.goToolArgs);
                    argv.add(rc.target);
                    argv.addAll(rc.programArgs);
                    break;
                }
                String out = rc.goOutput != null ? rc.goOutput : (cwd == null ? "." : cwd) + "/" + "go_build_" + safe(rc.name);
                List<String> build = new ArrayList<>(List.of(go, "build", "-o", out));
                build.addAll(rc.goToolArgs);
                build.add(rc.target);
                List<String> run = new ArrayList<>();
                run.add(out);
                run.addAll(rc.programArgs);
                return List.of(new Step(build, buildEnv(env, parentEnv, rc), cwd), new Step(run, env, cwd));
            }
        }
        return List.of(new Step(argv, env, cwd));
    }

    /** The environment of a build: the program's, with the parent's {@code LD_PRELOAD} (or none). */
    static Map<String, String> buildEnv(Map<String, String> env, Map<String, String> parentEnv, RunConfiguration rc) {
        Map<String, String> b = new LinkedHashMap<>(env);
        String parent = rc.passParentEnv ? parentEnv.get("LD_PRELOAD") : null;
        if (parent != null) {
            b.put("LD_PRELOAD", parent);
        } else {
            b.remove("LD_PRELOAD");
        }
        return b;
    }

    private static String safe(String name) {
        return name == null ? "app" : name.replaceAll("[^A-Za-z0-9_.-]", "_");
    }
}
