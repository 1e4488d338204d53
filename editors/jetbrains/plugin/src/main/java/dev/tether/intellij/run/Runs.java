package dev.tether.intellij.run;

import com.intellij.openapi.util.Key;
import dev.tether.core.launch.RunConfiguration;
import dev.tether.intellij.TetherProjectService;
import java.util.Map;

/** What the run-configuration extensions share. */
final class Runs {
    /** The session a run joins, from the moment it is prepared until its process starts. */
    static final Key<String> SESSION = Key.create("tether.session");
    /** The configuration's own variables before the patch, to restore once the process started. */
    static final Key<Map<String, String>> SAVED_ENV = Key.create("tether.savedEnv");

    private Runs() {}

    /**
     * The variables to give the process. With variables to remove from the IDE's environment the
     * whole environment is given and the parent's is not passed (the {@code boolean} result:
     * pass the parent environment).
     */
    record Env(Map<String, String> env, boolean passParent) {}

    static Env env(RunConfiguration patched) {
        if (patched.envUnset.isEmpty()) {
            return new Env(patched.env, patched.passParentEnv);
        }
        return new Env(patched.effectiveEnv(TetherProjectService.parentEnv()), false);
    }
}
