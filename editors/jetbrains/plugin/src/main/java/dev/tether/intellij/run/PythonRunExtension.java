package dev.tether.intellij.run;

import com.intellij.execution.ExecutionException;
import com.intellij.execution.configurations.GeneralCommandLine;
import com.intellij.execution.configurations.RunnerSettings;
import com.intellij.execution.process.ProcessHandler;
import com.jetbrains.python.run.AbstractPythonRunConfiguration;
import com.jetbrains.python.run.PythonRunConfiguration;
import com.jetbrains.python.run.PythonRunConfigurationExtension;
import dev.tether.core.launch.LaunchPatch;
import dev.tether.core.launch.RunConfiguration;
import dev.tether.core.launch.RunKind;
import dev.tether.intellij.TetherProjectService;
import java.util.ArrayList;
import java.util.LinkedHashMap;

/** PyCharm run configurations: the interpreter's command line gets the session's environment. */
public final class PythonRunExtension extends PythonRunConfigurationExtension {
    @Override
    public boolean isApplicableFor(AbstractPythonRunConfiguration<?> configuration) {
        return true;
    }

    @Override
    public boolean isEnabledFor(AbstractPythonRunConfiguration<?> configuration, RunnerSettings runnerSettings) {
        return TetherProjectService.get(configuration.getProject()).isEnabled();
    }

    @Override
    protected void patchCommandLine(AbstractPythonRunConfiguration<?> configuration, RunnerSettings runnerSettings,
            GeneralCommandLine cmdLine, String runnerId) throws ExecutionException {
        RunConfiguration rc = new RunConfiguration(RunKind.PYTHON, configuration.getName());
        rc.executable = cmdLine.getExePath();
        if (configuration instanceof PythonRunConfiguration py) {
            rc.target = py.getScriptName();
            rc.module = py.isModuleMode();
        }
        rc.programArgs = new ArrayList<>(cmdLine.getParametersList().getList());
        rc.workingDirectory = cmdLine.getWorkDirectory() == null ? null : cmdLine.getWorkDirectory().getPath();
        rc.env = new LinkedHashMap<>(cmdLine.getEnvironment());
        rc.passParentEnv = cmdLine.getParentEnvironmentType() != GeneralCommandLine.ParentEnvironmentType.NONE;
        TetherProjectService service = TetherProjectService.get(configuration.getProject());
        LaunchPatch.Patched patched = service.prepare(rc);
        Runs.Env env = Runs.env(patched.config());
        cmdLine.getEnvironment().clear();
        cmdLine.getEnvironment().putAll(env.env());
        if (!env.passParent()) {
            cmdLine.withParentEnvironmentType(GeneralCommandLine.ParentEnvironmentType.NONE);
        }
        if (!patched.config().executable.equals(rc.executable)) {
            cmdLine.setExePath(patched.config().executable); // a macOS copy of a protected interpreter
        }
        configuration.putUserData(Runs.SESSION, patched.sessionId());
    }

    @Override
    protected void attachToProcess(AbstractPythonRunConfiguration<?> configuration, ProcessHandler handler,
            RunnerSettings runnerSettings) {
        String session = configuration.getUserData(Runs.SESSION);
        configuration.putUserData(Runs.SESSION, null);
        TetherProjectService.get(configuration.getProject()).endWith(handler, session);
    }
}
