package dev.tether.intellij;

import com.intellij.execution.ExecutionException;
import com.intellij.execution.process.ProcessAdapter;
import com.intellij.execution.process.ProcessEvent;
import com.intellij.execution.process.ProcessHandler;
import com.intellij.openapi.Disposable;
import com.intellij.openapi.application.ApplicationManager;
import com.intellij.openapi.components.PersistentStateComponent;
import com.intellij.openapi.components.Service;
import com.intellij.openapi.components.State;
import com.intellij.openapi.components.Storage;
import com.intellij.openapi.progress.ProgressManager;
import com.intellij.openapi.project.Project;
import com.intellij.util.EnvironmentUtil;
import com.google.gson.JsonObject;
import dev.tether.core.daemon.TetherClient;
import dev.tether.core.launch.LaunchMapper;
import dev.tether.core.launch.LaunchPatch;
import dev.tether.core.launch.RunConfiguration;
import dev.tether.core.protocol.Diagnostic;
import dev.tether.core.protocol.PrepareLaunchResult;
import java.io.IOException;
import java.nio.file.Path;
import java.util.HashMap;
import java.util.List;
import java.util.Map;

/**
 * The project's tether state: whether runs go through tether (the toolbar toggle), the chosen
 * target, and the connection to the daemon. Everything that is not IDE glue is in the core.
 */
@Service(Service.Level.PROJECT)
@State(name = "TetherProject", storages = @Storage("tether.xml"))
public final class TetherProjectService implements PersistentStateComponent<TetherProjectService.Data>, Disposable {
    public static final class Data {
        public boolean enabled = false;
        /** {@code pid:1234}, ...; empty: {@code target.path} of the config file. */
        public String target = "";
    }

    private final Project project;
    private Data data = new Data();
    private volatile TetherClient client;

    public TetherProjectService(Project project) {
        this.project = project;
    }

    public static TetherProjectService get(Project project) {
        return project.getService(TetherProjectService.class);
    }

    @Override
    public Data getState() {
        return data;
    }

    @Override
    public void loadState(Data state) {
        data = state;
    }

    public boolean isEnabled() {
        return data.enabled;
    }

    public void setEnabled(boolean on) {
        data.enabled = on;
    }

    public String target() {
        return data.target == null || data.target.isBlank() ? null : data.target;
    }

    public void setTarget(String target) {
        data.target = target == null ? "" : target;
    }

    public Path workspaceFolder() {
        String base = project.getBasePath();
        return Path.of(base == null ? System.getProperty("user.home") : base);
    }

    /** The IDE's environment (the login shell's, as run configurations inherit it). */
    public static Map<String, String> parentEnv() {
        return new HashMap<>(EnvironmentUtil.getEnvironmentMap());
    }

    /** The daemon client, created on first use; the tool window and notifications listen to it. */
    public synchronized TetherClient client() {
        if (client == null) {
            TetherSettings.Data s = TetherSettings.get().getState();
            TetherClient.Options o = new TetherClient.Options();
            o.tetherPath = s.tetherPath == null || s.tetherPath.isBlank() ? null : s.tetherPath;
            o.socket = s.socket == null || s.socket.isBlank() ? null : Path.of(s.socket);
            o.env = parentEnv();
            o.clientName = "tether-jetbrains";
            o.clientVersion = ApplicationManager.getApplication().isUnitTestMode() ? "test" : "0.1.0";
            o.workspaceFolders = List.of(workspaceFolder());
            client = new TetherClient(o);
            client.addListener(new TetherNotifier(project));
        }
        return client;
    }

    /**
     * Sends {@code rc} to the daemon and applies its patch. Runs under a modal progress when
     * called on the event thread (an agent may start). An error stops the run with the
     * doctor's message; the findings are shown as notifications either way.
     */
    public LaunchPatch.Patched prepare(RunConfiguration rc) throws ExecutionException {
        JsonObject launch = LaunchMapper.toLaunch(rc, parentEnv());
        TetherClient.LaunchRequest request =
                new TetherClient.LaunchRequest(launch, workspaceFolder(), null, target());
        PrepareLaunchResult result;
        try {
            if (ApplicationManager.getApplication().isDispatchThread()) {
                PrepareLaunchResult[] box = new PrepareLaunchResult[1];
                IOException[] failed = new IOException[1];
                ProgressManager.getInstance().runProcessWithProgressSynchronously(() -> {
                    try {
                        box[0] = client().prepareLaunch(request);
                    } catch (IOException e) {
                        failed[0] = e;
                    }
                }, "Tether: preparing " + rc.name, false, project);
                if (failed[0] != null) {
                    throw failed[0];
                }
                result = box[0];
            } else {
                result = client().prepareLaunch(request);
            }
        } catch (IOException e) {
            throw new ExecutionException("Tether: " + e.getMessage(), e);
        }
        LaunchPatch.Patched patched = LaunchPatch.apply(rc, launch, result);
        TetherNotifier.diagnostics(project, rc.name, patched.diagnostics());
        if (patched.stopped()) {
            String why = patched.diagnostics().stream().filter(Diagnostic::isError).map(Diagnostic::describe)
                    .reduce((a, b) -> a + "\n" + b).orElse("the daemon gave no session");
            throw new ExecutionException("Tether stopped the launch:\n" + why);
        }
        return patched;
    }

    /** Ends the session when the run's process ends ({@code tether/launchEnded}). */
    public void endWith(ProcessHandler handler, String sessionId) {
        if (sessionId == null) {
            return;
        }
        handler.addProcessListener(new ProcessAdapter() {
            @Override
            public void processTerminated(ProcessEvent event) {
                ApplicationManager.getApplication().executeOnPooledThread(() -> {
                    try {
                        client().launchEnded(sessionId);
                    } catch (IOException ignored) {
                        // a daemon that went away has no such session any more
                    }
                });
            }
        });
    }

    @Override
    public void dispose() {
        TetherClient c = client;
        if (c != null) {
            c.close();
        }
    }
}
