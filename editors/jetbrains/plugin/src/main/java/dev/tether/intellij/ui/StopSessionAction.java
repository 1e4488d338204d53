package dev.tether.intellij.ui;

import com.intellij.icons.AllIcons;
import com.intellij.openapi.actionSystem.ActionUpdateThread;
import com.intellij.openapi.actionSystem.AnAction;
import com.intellij.openapi.actionSystem.AnActionEvent;
import com.intellij.openapi.application.ApplicationManager;
import com.intellij.openapi.project.DumbAware;
import com.intellij.ui.treeStructure.Tree;
import dev.tether.core.session.SessionNodes;
import dev.tether.intellij.TetherProjectService;
import java.io.IOException;
import javax.swing.tree.DefaultMutableTreeNode;
import javax.swing.tree.TreePath;

/** Stops the selected live session ({@code tether/stopSession}). */
final class StopSessionAction extends AnAction implements DumbAware {
    private final Tree tree;

    StopSessionAction(Tree tree) {
        super("Stop Session", "No new process joins; the running ones are served until they exit", AllIcons.Actions.Suspend);
        this.tree = tree;
    }

    private SessionNodes.Node selected() {
        TreePath p = tree.getSelectionPath();
        while (p != null) {
            Object o = ((DefaultMutableTreeNode) p.getLastPathComponent()).getUserObject();
            if (o instanceof SessionNodes.Node n && n.sessionId() != null) {
                return n;
            }
            p = p.getParentPath();
        }
        return null;
    }

    @Override
    public void update(AnActionEvent e) {
        SessionNodes.Node n = selected();
        e.getPresentation().setEnabled(n != null && n.live());
    }

    @Override
    public void actionPerformed(AnActionEvent e) {
        SessionNodes.Node n = selected();
        if (n == null || e.getProject() == null) {
            return;
        }
        TetherProjectService service = TetherProjectService.get(e.getProject());
        ApplicationManager.getApplication().executeOnPooledThread(() -> {
            try {
                service.client().stopSession(n.sessionId(), false);
            } catch (IOException ignored) {
                // the daemon is gone: so is the session
            }
        });
    }

    @Override
    public ActionUpdateThread getActionUpdateThread() {
        return ActionUpdateThread.EDT;
    }
}
