package dev.tether.core.session;

import static org.junit.jupiter.api.Assertions.assertEquals;
import static org.junit.jupiter.api.Assertions.assertFalse;
import static org.junit.jupiter.api.Assertions.assertTrue;

import dev.tether.core.Json;
import dev.tether.core.protocol.SessionSnapshot;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;

class SessionStoreTest {
    static SessionSnapshot snap(String id, String state, long created, String extra) {
        String json = "{\"id\":\"" + id + "\",\"target\":\"pid:1\",\"state\":\"" + state + "\",\"agent\":null,"
                + "\"processes\":[],\"counters\":{\"connectionsOpen\":0,\"connectionsTotal\":3,\"bytesIn\":2048,"
                + "\"bytesOut\":5,\"filesRead\":4,\"dnsLookups\":1},\"lastErrors\":[],\"diagnostics\":[],"
                + "\"created\":" + created + ",\"endReason\":null,\"launchName\":\"app\",\"workspaceFolder\":\"/w\"" + extra + "}";
        return Json.GSON.fromJson(json, SessionSnapshot.class);
    }

    @Test
    void updatesReportWhatChanged() {
        SessionStore store = new SessionStore();
        SessionStore.Update u = store.update(snap("a", "starting", 10, ""));
        assertTrue(u.isNew());
        u = store.update(snap("a", "ready", 10, ""));
        assertFalse(u.isNew());
        assertTrue(u.stateChanged());
        SessionSnapshot withDiag = Json.GSON.fromJson(Json.GSON.toJson(snap("a", "ready", 10, "")).replace(
                "\"diagnostics\":[]",
                "\"diagnostics\":[{\"id\":\"no-attach\",\"severity\":\"warning\",\"message\":\"nothing joined\"}]"),
                SessionSnapshot.class);
        u = store.update(withDiag);
        assertEquals(1, u.newDiagnostics().size());
        assertEquals("no-attach", u.newDiagnostics().get(0).id());
        assertEquals(0, store.update(withDiag).newDiagnostics().size());
    }

    @Test
    void liveFirstNewestFirstAndEndedOnesTrimmed() {
        SessionStore store = new SessionStore();
        List<SessionSnapshot> all = new ArrayList<>();
        for (int i = 0; i < 15; i++) {
            all.add(snap("e" + i, "ended", i, ""));
        }
        all.add(snap("old-live", "ready", 1, ""));
        all.add(snap("new-live", "starting", 50, ""));
        store.replaceAll(all);
        List<SessionSnapshot> list = store.list();
        assertEquals(2 + SessionStore.KEEP_ENDED, list.size());
        assertEquals("new-live", list.get(0).id());
        assertEquals("old-live", list.get(1).id());
        assertEquals("e14", list.get(2).id());
        assertEquals(2, store.liveCount());
    }

    @Test
    void treeNodesCarryThePanelsFields() {
        SessionSnapshot s = Json.GSON.fromJson(Json.GSON.toJson(snap("a", "ready", 100, "")).replace("\"processes\":[]",
                "\"processes\":[{\"pid\":42,\"executable\":\"/usr/bin/python3\",\"since\":100,\"skipped\":false},"
                        + "{\"pid\":43,\"executable\":\"/usr/bin/dlv\",\"since\":100,\"skipped\":true}]")
                .replace("\"lastErrors\":[]", "\"lastErrors\":[\"first\",\"second\"]"), SessionSnapshot.class);
        SessionNodes.Node n = SessionNodes.session(s, 165_000);
        assertEquals("app", n.label());
        assertEquals("ready · pid:1 · 1 process", n.description());
        assertTrue(n.live());
        List<String> labels = n.children().stream().map(SessionNodes.Node::label).toList();
        assertEquals(List.of("target", "state", "processes", "connections", "bytes", "files read", "last errors"), labels);
        assertEquals("ready · 1m 5s", n.children().get(1).description());
        assertEquals("1 attached, 1 skipped", n.children().get(2).description());
        assertEquals("42 python3", n.children().get(2).children().get(0).label());
        assertEquals("0 open, 3 total", n.children().get(3).description());
        assertEquals("in 2.0 KiB · out 5 B", n.children().get(4).description());
        assertEquals("4 · DNS lookups 1", n.children().get(5).description());
        assertEquals("second", n.children().get(6).children().get(0).label());
        assertEquals("Tether: on · 1 session", SessionNodes.statusText(true, 1, true));
        assertEquals("Tether: no daemon", SessionNodes.statusText(true, 1, false));
        assertEquals("15 MiB", SessionNodes.Format.bytes(15L << 20));
        assertEquals("2h 0m", SessionNodes.Format.age(0, 7_200_000));
    }
}
