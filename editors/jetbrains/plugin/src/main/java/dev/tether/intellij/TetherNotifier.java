package dev.tether.intellij;

import com.intellij.notification.NotificationGroupManager;
import com.intellij.notification.NotificationType;
import com.intellij.openapi.project.Project;
import dev.tether.core.daemon.TetherClient;
import dev.tether.core.protocol.Diagnostic;
import dev.tether.core.session.SessionStore;
import java.util.List;

/** The daemon's findings and messages as IDE notifications (group "Tether"). */
final class TetherNotifier implements TetherClient.Listener {
    private static final String GROUP = "Tether";
    private final Project project;

    TetherNotifier(Project project) {
        this.project = project;
    }

    static void notify(Project project, String title, String content, NotificationType type) {
        NotificationGroupManager.getInstance().getNotificationGroup(GROUP)
                .createNotification(title, content, type)
                .notify(project);
    }

    static NotificationType type(Diagnostic d) {
        if (d.severity() == null) {
            return NotificationType.INFORMATION;
        }
        return switch (d.severity()) {
            case ERROR -> NotificationType.ERROR;
            case WARNING -> NotificationType.WARNING;
            case INFO -> NotificationType.INFORMATION;
        };
    }

    /** One notification per finding, with its fix (applied, or what to do). */
    static void diagnostics(Project project, String runName, List<Diagnostic> ds) {
        for (Diagnostic d : ds) {
            String fix = d.fix() == null ? "" : "<br>" + (d.fix().applied() ? "Fixed: " : "Fix: ") + escape(d.fix().description());
            notify(project, "Tether: " + runName + " (" + d.id() + ")", escape(d.message()) + fix, type(d));
        }
    }

    private static String escape(String s) {
        return s.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;");
    }

    @Override
    public void sessionChanged(SessionStore.Update update) {
        // Findings that come while a session runs (no-attach, ports) are news.
        String name = update.session().launchName() != null ? update.session().launchName() : update.session().target();
        diagnostics(project, name, update.newDiagnostics());
    }

    @Override
    public void message(int type, String text) {
        if (type <= 2) {
            notify(project, "Tether", escape(text), type == 1 ? NotificationType.ERROR : NotificationType.WARNING);
        }
    }

    @Override
    public void connectionChanged(boolean connected, String daemonVersion) {
        if (!connected) {
            notify(project, "Tether", "The tether daemon went away; the next run starts it again.",
                    NotificationType.INFORMATION);
        }
    }
}
