package dev.tether.intellij.run;

import com.intellij.execution.ExecutionException;
import com.intellij.execution.RunConfigurationExtension;
import com.intellij.execution.application.ApplicationConfiguration;
import com.intellij.execution.configurations.JavaParameters;
import com.intellij.execution.configurations.RunConfigurationBase;
import com.intellij.execution.configurations.RunnerSettings;
import com.intellij.execution.process.ProcessHandler;
import com.intellij.openapi.externalSystem.service.execution.ExternalSystemRunConfiguration;
import com.intellij.openapi.externalSystem.model.execution.ExternalSystemTaskExecutionSettings;
import com.intellij.openapi.projectRoots.Sdk;
import com.intellij.util.execution.ParametersListUtil;
import dev.tether.core.launch.LaunchPatch;
import dev.tether.core.launch.RunConfiguration;
import dev.tether.core.launch.RunKind;
import dev.tether.intellij.TetherProjectService;
import java.io.File;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Java applications, Maven and Gradle run configurations: the JVM (or the build tool) gets the
 * session's environment. Maven runs its own JVM from {@code JavaParameters}; Gradle's
 * environment is the run configuration's settings, patched for this run and restored once the
 * process started.
 */
public final class JavaRunExtension extends RunConfigurationExtension {
    private static final String MAVEN_CONFIGURATION = "org.jetbrains.idea.maven.execution.MavenRunConfiguration";

    @Override
    public boolean isApplicableFor(RunConfigurationBase<?> configuration) {
        return configuration instanceof ApplicationConfiguration
                || configuration instanceof ExternalSystemRunConfiguration
                || configuration.getClass().getName().equals(MAVEN_CONFIGURATION);
    }

    @Override
    public boolean isEnabledFor(RunConfigurationBase<?> configuration, RunnerSettings runnerSettings) {
        return TetherProjectService.get(configuration.getProject()).isEnabled();
    }

    @Override
    public <T extends RunConfigurationBase<?>> void updateJavaParameters(T configuration, JavaParameters params,
            RunnerSettings runnerSettings) throws ExecutionException {
        TetherProjectService service = TetherProjectService.get(configuration.getProject());
        if (configuration instanceof ExternalSystemRunConfiguration gradle) {
            patchGradle(service, gradle);
            return;
        }
        RunConfiguration rc = fromJavaParameters(configuration, params);
        LaunchPatch.Patched patched = service.prepare(rc);
        Runs.Env env = Runs.env(patched.config());
        params.setEnv(env.env());
        params.setPassParentEnvs(env.passParent());
        configuration.putUserData(Runs.SESSION, patched.sessionId());
    }

    private static RunConfiguration fromJavaParameters(RunConfigurationBase<?> configuration, JavaParameters params) {
        boolean maven = configuration.getClass().getName().equals(MAVEN_CONFIGURATION);
        RunConfiguration rc = new RunConfiguration(maven ? RunKind.MAVEN : RunKind.JAVA_APPLICATION, configuration.getName());
        Sdk jdk = params.getJdk();
        rc.executable = jdk == null || jdk.getHomePath() == null ? "java" : jdk.getHomePath() + "/bin/java";
        List<String> vm = new ArrayList<>(params.getVMParametersList().getList());
        List<String> cp = params.getClassPath().getPathList();
        if (maven) {
            // Maven runs as `java VM-OPTIONS -cp CLASSPATH LAUNCHER GOALS...`.
            vm.add("-cp");
            vm.add(String.join(File.pathSeparator, cp));
            vm.add(params.getMainClass());
            rc.executableArgs = vm;
            rc.tasks = new ArrayList<>(params.getProgramParametersList().getList());
        } else {
            rc.executableArgs = vm;
            rc.classPath = new ArrayList<>(cp);
            rc.target = params.getMainClass();
            rc.programArgs = new ArrayList<>(params.getProgramParametersList().getList());
        }
        rc.workingDirectory = params.getWorkingDirectory();
        rc.env = new LinkedHashMap<>(params.getEnv());
        rc.passParentEnv = params.isPassParentEnvs();
        return rc;
    }

    private static void patchGradle(TetherProjectService service, ExternalSystemRunConfiguration configuration)
            throws ExecutionException {
        ExternalSystemTaskExecutionSettings s = configuration.getSettings();
        RunConfiguration rc = new RunConfiguration(RunKind.GRADLE, configuration.getName());
        String dir = s.getExternalProjectPath();
        File wrapper = dir == null ? null : new File(dir, "gradlew");
        rc.executable = wrapper != null && wrapper.canExecute() ? wrapper.getPath() : "gradle";
        rc.tasks = new ArrayList<>(s.getTaskNames());
        String script = s.getScriptParameters();
        rc.programArgs = script == null ? new ArrayList<>() : new ArrayList<>(ParametersListUtil.parse(script));
        rc.workingDirectory = dir;
        rc.env = new LinkedHashMap<>(s.getEnv());
        rc.passParentEnv = s.isPassParentEnvs();
        LaunchPatch.Patched patched = service.prepare(rc);
        Runs.Env env = Runs.env(patched.config());
        configuration.putUserData(Runs.SAVED_ENV, new LinkedHashMap<>(s.getEnv()));
        s.setEnv(env.env());
        s.setPassParentEnvs(env.passParent());
        configuration.putUserData(Runs.SESSION, patched.sessionId());
    }

    @Override
    protected void attachToProcess(RunConfigurationBase<?> configuration, ProcessHandler handler,
            RunnerSettings runnerSettings) {
        String session = configuration.getUserData(Runs.SESSION);
        configuration.putUserData(Runs.SESSION, null);
        Map<String, String> saved = configuration.getUserData(Runs.SAVED_ENV);
        if (saved != null && configuration instanceof ExternalSystemRunConfiguration gradle) {
            // The settings are the saved configuration: put the user's variables back.
            configuration.putUserData(Runs.SAVED_ENV, null);
            gradle.getSettings().setEnv(saved);
        }
        TetherProjectService.get(configuration.getProject()).endWith(handler, session);
    }
}
