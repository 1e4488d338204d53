package dev.tether.intellij.ui;

import com.intellij.icons.AllIcons;
import com.intellij.openapi.actionSystem.ActionManager;
import com.intellij.openapi.actionSystem.ActionToolbar;
import com.intellij.openapi.actionSystem.DefaultActionGroup;
import com.intellij.openapi.application.ApplicationManager;
import com.intellij.openapi.project.DumbAware;
import com.intellij.openapi.project.Project;
import com.intellij.openapi.wm.ToolWindow;
import com.intellij.openapi.wm.ToolWindowFactory;
import com.intellij.ui.ColoredTreeCellRenderer;
import com.intellij.ui.SimpleTextAttributes;
import com.intellij.ui.components.JBScrollPane;
import com.intellij.ui.content.Content;
import com.intellij.ui.content.ContentFactory;
import com.intellij.ui.treeStructure.Tree;
import dev.tether.core.daemon.TetherClient;
import dev.tether.core.protocol.SessionSnapshot;
import dev.tether.core.session.SessionNodes;
import dev.tether.core.session.SessionStore;
import dev.tether.intellij.TetherProjectService;
import java.awt.BorderLayout;
import java.util.List;
import javax.swing.Icon;
import javax.swing.JPanel;
import javax.swing.JTree;
import javax.swing.Timer;
import javax.swing.tree.DefaultMutableTreeNode;
import javax.swing.tree.DefaultTreeModel;
import javax.swing.tree.TreePath;

/**
 * The "Tether" tool window: the live sessions and the last ended ones, with the same fields as
 * the VS Code panel ({@link SessionNodes} builds the tree; this only draws it).
 */
public final class TetherToolWindowFactory implements ToolWindowFactory, DumbAware {
    @Override
    public void createToolWindowContent(Project project, ToolWindow toolWindow) {
        TetherProjectService service = TetherProjectService.get(project);
        DefaultMutableTreeNode root = new DefaultMutableTreeNode("sessions");
        DefaultTreeModel model = new DefaultTreeModel(root);
        Tree tree = new Tree(model);
        tree.setRootVisible(false);
        tree.setCellRenderer(new ColoredTreeCellRenderer() {
            @Override
            public void customizeCellRenderer(JTree t, Object value, boolean selected, boolean expanded, boolean leaf,
                    int row, boolean hasFocus) {
                Object o = ((DefaultMutableTreeNode) value).getUserObject();
                if (o instanceof SessionNodes.Node n) {
                    append(n.label());
                    if (n.description() != null) {
                        append("  " + n.description(), SimpleTextAttributes.GRAYED_ATTRIBUTES);
                    }
                    setIcon(icon(n.icon()));
                    setToolTipText(n.tooltip());
                } else {
                    append(String.valueOf(o), SimpleTextAttributes.GRAYED_ATTRIBUTES);
                }
            }
        });

        Runnable refresh = () -> ApplicationManager.getApplication().invokeLater(() -> {
            List<SessionSnapshot> list = service.client().sessions().list();
            root.removeAllChildren();
            long now = System.currentTimeMillis();
            for (SessionSnapshot s : list) {
                root.add(toTree(SessionNodes.session(s, now)));
            }
            if (list.isEmpty()) {
                root.add(new DefaultMutableTreeNode(service.client().isConnected()
                        ? "No sessions: enable Tether and run a configuration" : "Not connected to the tether daemon"));
            }
            model.reload();
            for (int i = 0; i < tree.getRowCount(); i++) {
                TreePath p = tree.getPathForRow(i);
                Object o = ((DefaultMutableTreeNode) p.getLastPathComponent()).getUserObject();
                if (o instanceof SessionNodes.Node n && n.live()) {
                    tree.expandPath(p);
                }
            }
        });
        service.client().addListener(new TetherClient.Listener() {
            @Override
            public void sessionChanged(SessionStore.Update update) {
                refresh.run();
            }

            @Override
            public void sessionsReset(List<SessionSnapshot> sessions) {
                refresh.run();
            }

            @Override
            public void connectionChanged(boolean connected, String version) {
                refresh.run();
            }
        });
        // Ages tick; a daemon that runs is connected to when the window opens.
        new Timer(5000, e -> refresh.run()).start();
        ApplicationManager.getApplication().executeOnPooledThread(() -> {
            try {
                service.client().listSessions();
            } catch (java.io.IOException ignored) {
                // shown as "not connected"
            }
            refresh.run();
        });

        DefaultActionGroup actions = new DefaultActionGroup();
        actions.add(new ToggleTetherAction());
        actions.add(new PickTargetAction());
        actions.add(new StopSessionAction(tree));
        ActionToolbar toolbar = ActionManager.getInstance().createActionToolbar("TetherToolWindow", actions, true);
        JPanel panel = new JPanel(new BorderLayout());
        toolbar.setTargetComponent(panel);
        panel.add(toolbar.getComponent(), BorderLayout.NORTH);
        panel.add(new JBScrollPane(tree), BorderLayout.CENTER);
        Content content = ContentFactory.getInstance().createContent(panel, "", false);
        toolWindow.getContentManager().addContent(content);
    }

    private static DefaultMutableTreeNode toTree(SessionNodes.Node n) {
        DefaultMutableTreeNode t = new DefaultMutableTreeNode(n);
        for (SessionNodes.Node c : n.children()) {
            t.add(toTree(c));
        }
        return t;
    }

    static Icon icon(SessionNodes.Icon i) {
        return switch (i) {
            case STARTING -> AllIcons.Process.Step_1;
            case READY -> AllIcons.RunConfigurations.TestState.Run;
            case FAILED, ERROR, ERRORS -> AllIcons.General.Error;
            case ENDED -> AllIcons.RunConfigurations.TestIgnored;
            case TARGET -> AllIcons.General.Locate;
            case PROCESS -> AllIcons.Debugger.Console;
            case PROCESS_SKIPPED -> AllIcons.RunConfigurations.TestIgnored;
            case CONNECTIONS -> AllIcons.Nodes.Plugin;
            case BYTES -> AllIcons.Actions.Refresh;
            case FILES -> AllIcons.FileTypes.Any_type;
            case DIAGNOSTICS, INFO -> AllIcons.General.Information;
            case WARNING -> AllIcons.General.Warning;
        };
    }
}
