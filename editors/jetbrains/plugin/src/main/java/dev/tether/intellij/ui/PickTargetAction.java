package dev.tether.intellij.ui;

import com.intellij.icons.AllIcons;
import com.intellij.openapi.actionSystem.ActionUpdateThread;
import com.intellij.openapi.actionSystem.AnAction;
import com.intellij.openapi.actionSystem.AnActionEvent;
import com.intellij.openapi.application.ApplicationManager;
import com.intellij.openapi.project.DumbAware;
import com.intellij.openapi.project.Project;
import com.intellij.openapi.ui.Messages;
import com.intellij.openapi.ui.popup.JBPopupFactory;
import dev.tether.core.protocol.Target;
import dev.tether.intellij.TetherProjectService;
import java.io.IOException;
import java.util.ArrayList;
import java.util.List;

/** The target picker: the daemon's {@code tether/listTargets}, plus "the config file's target". */
public final class PickTargetAction extends AnAction implements DumbAware {
    private static final String FROM_CONFIG = "target.path of .tether/tether.json";

    public PickTargetAction() {
        super("Choose Tether Target…", "The pod or process runs behave as if inside", AllIcons.General.Locate);
    }

    @Override
    public void actionPerformed(AnActionEvent e) {
        Project project = e.getProject();
        if (project == null) {
            return;
        }
        TetherProjectService service = TetherProjectService.get(project);
        ApplicationManager.getApplication().executeOnPooledThread(() -> {
            List<Target> targets;
            try {
                targets = service.client().listTargets(null).targets();
            } catch (IOException ex) {
                ApplicationManager.getApplication().invokeLater(
                        () -> Messages.showErrorDialog(project, ex.getMessage(), "Tether"));
                return;
            }
            List<String> items = new ArrayList<>();
            items.add(FROM_CONFIG);
            for (Target t : targets) {
                items.add(t.label());
            }
            ApplicationManager.getApplication().invokeLater(() -> JBPopupFactory.getInstance()
                    .createPopupChooserBuilder(items)
                    .setTitle("Tether Target (now: " + (service.target() == null ? "config file" : service.target()) + ")")
                    .setNamerForFiltering(s -> s)
                    .setItemChosenCallback(chosen -> {
                        int i = items.indexOf(chosen);
                        service.setTarget(i <= 0 ? null : targets.get(i - 1).path());
                    })
                    .createPopup()
                    .showCenteredInCurrentWindow(project));
        });
    }

    @Override
    public ActionUpdateThread getActionUpdateThread() {
        return ActionUpdateThread.BGT;
    }
}
