package dev.tether.intellij.run;

import com.intellij.execution.ExecutionException;
import com.intellij.execution.runners.ExecutionEnvironment;
import com.intellij.javascript.nodejs.execution.AbstractNodeTargetRunProfile;
import com.intellij.javascript.nodejs.execution.runConfiguration.AbstractNodeRunConfigurationExtension;
import com.intellij.javascript.nodejs.execution.runConfiguration.NodeRunConfigurationLaunchSession;
import com.intellij.javascript.nodejs.interpreter.NodeJsInterpreter;
import com.intellij.javascript.nodejs.interpreter.local.NodeJsLocalInterpreter;
import com.intellij.util.execution.ParametersListUtil;
import com.jetbrains.nodejs.run.NodeJsRunConfiguration;
import dev.tether.core.launch.LaunchPatch;
import dev.tether.core.launch.RunConfiguration;
import dev.tether.core.launch.RunKind;
import dev.tether.intellij.TetherProjectService;
import java.util.ArrayList;
import java.util.LinkedHashMap;

/**
 * Node.js run configurations. The platform offers no command-line hook here, so the
 * configuration's variables are patched for this run and restored by {@link TetherExecutionListener}
 * once the process started.
 */
public final class NodeRunExtension extends AbstractNodeRunConfigurationExtension {
    @Override
    public boolean isApplicableFor(AbstractNodeTargetRunProfile profile) {
        return profile instanceof NodeJsRunConfiguration;
    }

    @Override
    public NodeRunConfigurationLaunchSession createLaunchSession(AbstractNodeTargetRunProfile profile,
            ExecutionEnvironment environment) throws ExecutionException {
        TetherProjectService service = TetherProjectService.get(profile.getProject());
        if (!service.isEnabled() || !(profile instanceof NodeJsRunConfiguration node)) {
            return null;
        }
        RunConfiguration rc = new RunConfiguration(RunKind.NODE, node.getName());
        NodeJsInterpreter interpreter = node.getInterpreterRef().resolve(node.getProject());
        rc.executable = interpreter instanceof NodeJsLocalInterpreter local
                ? local.getInterpreterSystemDependentPath() : "node";
        rc.executableArgs = new ArrayList<>(ParametersListUtil.parse(nullToEmpty(node.getInterpreterOptions())));
        rc.target = node.getInputPath();
        rc.programArgs = new ArrayList<>(ParametersListUtil.parse(nullToEmpty(node.getProgramParameters())));
        rc.workingDirectory = node.getWorkingDirectory();
        rc.env = new LinkedHashMap<>(node.getEnvs());
        rc.passParentEnv = node.isPassParentEnvs();
        LaunchPatch.Patched patched = service.prepare(rc);
        Runs.Env env = Runs.env(patched.config());
        node.putUserData(Runs.SAVED_ENV, new LinkedHashMap<>(node.getEnvs()));
        node.putUserData(Runs.SESSION, patched.sessionId());
        TetherExecutionListener.restoreAfterStart(node, () -> {
            node.setEnvs(node.getUserData(Runs.SAVED_ENV));
            node.setPassParentEnvs(rc.passParentEnv);
        });
        node.setEnvs(env.env());
        node.setPassParentEnvs(env.passParent());
        return null;
    }

    private static String nullToEmpty(String s) {
        return s == null ? "" : s;
    }
}
