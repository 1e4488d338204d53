package dev.tether.intellij.run;

import com.goide.execution.GoRunConfigurationBase;
import com.goide.execution.GoRunningState;
import com.goide.execution.application.GoApplicationConfiguration;
import com.goide.execution.extension.GoRunConfigurationExtension;
import com.goide.util.GoCommandLineParameter;
import com.goide.util.GoExecutor;
import com.intellij.execution.ExecutionException;
import com.intellij.execution.configurations.RunnerSettings;
import com.intellij.execution.target.TargetedCommandLineBuilder;
import com.intellij.util.execution.ParametersListUtil;
import dev.tether.core.launch.LaunchPatch;
import dev.tether.core.launch.RunConfiguration;
import dev.tether.core.launch.RunKind;
import dev.tether.intellij.TetherProjectService;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.WeakHashMap;

/**
 * GoLand "Go Build": the launch is prepared when GoLand builds (the daemon merges
 * {@code -linkmode external} into the tool arguments, by the doctor's rules, so the binary is
 * dynamically linked and loads the layer); the program then starts with the session's
 * environment. The build itself runs without the layer.
 */
public final class GoRunExtension extends GoRunConfigurationExtension {
    /** The patch made at build time, for the run that follows (same running state). */
    private static final Map<Object, LaunchPatch.Patched> PATCHED = java.util.Collections.synchronizedMap(new WeakHashMap<>());

    @Override
    public boolean isApplicableFor(GoRunConfigurationBase<?> configuration) {
        return configuration instanceof GoApplicationConfiguration;
    }

    @Override
    public boolean isEnabledFor(GoRunConfigurationBase<?> configuration, RunnerSettings runnerSettings) {
        return TetherProjectService.get(configuration.getProject()).isEnabled();
    }

    @Override
    protected void patchExecutor(GoRunConfigurationBase<?> configuration, RunnerSettings runnerSettings,
            GoExecutor executor, String runnerId, GoRunningState<? extends GoRunConfigurationBase<?>> state,
            GoRunningState.CommandLineType commandLineType) throws ExecutionException {
        if (commandLineType == GoRunningState.CommandLineType.BUILD
                && configuration instanceof GoApplicationConfiguration app) {
            List<String> toolArgs = ParametersListUtil.parse(app.getGoToolParams());
            RunConfiguration rc = new RunConfiguration(RunKind.GO, configuration.getName());
            rc.target = target(app);
            rc.goToolArgs = new ArrayList<>(toolArgs);
            rc.programArgs = new ArrayList<>(ParametersListUtil.parse(app.getParams()));
            rc.workingDirectory = app.getWorkingDirectory();
            rc.env = new LinkedHashMap<>(app.getCustomEnvironment());
            rc.passParentEnv = app.isPassParentEnvironment();
            LaunchPatch.Patched patched = TetherProjectService.get(configuration.getProject()).prepare(rc);
            replaceToolArgs(executor, toolArgs, patched.config().goToolArgs);
            PATCHED.put(state, patched);
        }
        super.patchExecutor(configuration, runnerSettings, executor, runnerId, state, commandLineType);
    }

    @Override
    protected void patchCommandLine(GoRunConfigurationBase<?> configuration, RunnerSettings runnerSettings,
            TargetedCommandLineBuilder cmdLine, String runnerId, GoRunningState<? extends GoRunConfigurationBase<?>> state,
            GoRunningState.CommandLineType commandLineType) throws ExecutionException {
        LaunchPatch.Patched patched = commandLineType == GoRunningState.CommandLineType.RUN ? PATCHED.remove(state) : null;
        if (commandLineType == GoRunningState.CommandLineType.RUN && patched != null) {
            Runs.Env env = Runs.env(patched.config());
            for (Map.Entry<String, String> e : env.env().entrySet()) {
                cmdLine.addEnvironmentVariable(e.getKey(), e.getValue());
            }
            for (String gone : patched.config().envUnset) {
                cmdLine.removeEnvironmentVariable(gone);
            }
            configuration.putUserData(Runs.SESSION, patched.sessionId());
        }
        super.patchCommandLine(configuration, runnerSettings, cmdLine, runnerId, state, commandLineType);
    }

    private static String target(GoApplicationConfiguration app) {
        return switch (app.getKind()) {
            case FILE -> app.getFilePaths().isEmpty() ? app.getWorkingDirectory() : app.getFilePaths().get(0);
            case DIRECTORY -> app.getDirectoryPath();
            default -> app.getWorkingDirectory(); // a package: GoLand builds it from the module
        };
    }

    /** Puts the merged tool arguments where the user's are in {@code go build ...}. */
    static void replaceToolArgs(GoExecutor executor, List<String> before, List<String> after) {
        List<GoCommandLineParameter> params = new ArrayList<>(executor.getParameters());
        List<String> words = new ArrayList<>();
        for (GoCommandLineParameter p : params) {
            words.add(p.toPresentableString());
        }
        int at = before.isEmpty() ? -1 : java.util.Collections.indexOfSubList(words, before);
        int removeCount = at < 0 ? 0 : before.size();
        if (at < 0) {
            at = Math.min(1, words.size()); // right after `build`
        }
        for (int i = params.size() - 1; i >= 0; i--) {
            executor.withoutParameter(i);
        }
        List<GoCommandLineParameter> rebuilt = new ArrayList<>(params.subList(0, at));
        for (String a : after) {
            rebuilt.add(new GoCommandLineParameter.StringParameter(a));
        }
        rebuilt.addAll(params.subList(at + removeCount, params.size()));
        executor.withParameters(rebuilt.toArray(GoCommandLineParameter[]::new));
    }

    @Override
    protected void attachToProcess(GoRunConfigurationBase<?> configuration,
            com.intellij.execution.process.ProcessHandler handler, RunnerSettings runnerSettings) {
        String session = configuration.getUserData(Runs.SESSION);
        configuration.putUserData(Runs.SESSION, null);
        TetherProjectService.get(configuration.getProject()).endWith(handler, session);
    }
}
