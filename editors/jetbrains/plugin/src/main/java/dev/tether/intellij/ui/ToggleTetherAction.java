package dev.tether.intellij.ui;

import com.intellij.icons.AllIcons;
import com.intellij.openapi.actionSystem.ActionUpdateThread;
import com.intellij.openapi.actionSystem.AnActionEvent;
import com.intellij.openapi.actionSystem.ToggleAction;
import com.intellij.openapi.project.DumbAware;
import dev.tether.intellij.TetherProjectService;

/** The toolbar toggle: runs of this project go through tether, or not. */
public final class ToggleTetherAction extends ToggleAction implements DumbAware {
    public ToggleTetherAction() {
        super("Run with Tether", "Run and debug configurations as if inside the chosen target", AllIcons.Nodes.Plugin);
    }

    @Override
    public boolean isSelected(AnActionEvent e) {
        return e.getProject() != null && TetherProjectService.get(e.getProject()).isEnabled();
    }

    @Override
    public void setSelected(AnActionEvent e, boolean state) {
        if (e.getProject() != null) {
            TetherProjectService.get(e.getProject()).setEnabled(state);
        }
    }

    @Override
    public ActionUpdateThread getActionUpdateThread() {
        return ActionUpdateThread.BGT;
    }
}
