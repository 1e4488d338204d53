package dev.tether.intellij.run;

import com.intellij.execution.ExecutionListener;
import com.intellij.execution.configurations.RunProfile;
import com.intellij.execution.process.ProcessHandler;
import com.intellij.execution.runners.ExecutionEnvironment;
import com.intellij.openapi.project.Project;
import com.intellij.openapi.util.UserDataHolder;
import dev.tether.intellij.TetherProjectService;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Runs whose configuration had to be patched in place (Node.js) get it back once their process
 * started, and their session ends with the process.
 */
public final class TetherExecutionListener implements ExecutionListener {
    private static final Map<RunProfile, Runnable> RESTORE = new ConcurrentHashMap<>();

    static void restoreAfterStart(RunProfile profile, Runnable restore) {
        RESTORE.put(profile, restore);
    }

    @Override
    public void processStarted(String executorId, ExecutionEnvironment env, ProcessHandler handler) {
        RunProfile profile = env.getRunProfile();
        Runnable restore = RESTORE.remove(profile);
        if (restore == null) {
            return;
        }
        restore.run();
        if (profile instanceof UserDataHolder holder) {
            String session = holder.getUserData(Runs.SESSION);
            holder.putUserData(Runs.SESSION, null);
            Project project = env.getProject();
            TetherProjectService.get(project).endWith(handler, session);
        }
    }

    @Override
    public void processNotStarted(String executorId, ExecutionEnvironment env) {
        Runnable restore = RESTORE.remove(env.getRunProfile());
        if (restore != null) {
            restore.run();
        }
    }
}
