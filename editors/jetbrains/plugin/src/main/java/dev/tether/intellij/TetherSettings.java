package dev.tether.intellij;

import com.intellij.openapi.application.ApplicationManager;
import com.intellij.openapi.components.PersistentStateComponent;
import com.intellij.openapi.components.State;
import com.intellij.openapi.components.Storage;

/** Where {@code tether} is, and an optional socket (both empty: {@code tether} on PATH, the default socket). */
@State(name = "TetherSettings", storages = @Storage("tether.xml"))
public final class TetherSettings implements PersistentStateComponent<TetherSettings.Data> {
    public static final class Data {
        public String tetherPath = "";
        public String socket = "";
    }

    private Data data = new Data();

    public static TetherSettings get() {
        return ApplicationManager.getApplication().getService(TetherSettings.class);
    }

    @Override
    public Data getState() {
        return data;
    }

    @Override
    public void loadState(Data state) {
        data = state;
    }
}
