package dev.tether.core.session;

import dev.tether.core.protocol.Diagnostic;
import dev.tether.core.protocol.SessionSnapshot;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Set;

/**
 * The sessions the daemon reported ({@code tether/sessions} answers and
 * {@code tether/sessionChanged} notifications, each a whole snapshot). Thread-safe. Live
 * sessions are kept until they end; of the ended or failed ones the newest {@link #KEEP_ENDED}.
 */
public final class SessionStore {
    /** Ended or failed sessions kept for the tool window. */
    public static final int KEEP_ENDED = 10;

    /** What an update changed, for notifications. */
    public record Update(SessionSnapshot session, boolean isNew, boolean stateChanged, List<Diagnostic> newDiagnostics) {}

    private final Map<String, SessionSnapshot> byId = new LinkedHashMap<>();

    /** Takes a {@code tether/sessionChanged} snapshot. */
    public synchronized Update update(SessionSnapshot s) {
        SessionSnapshot old = byId.put(s.id(), s);
        Set<String> seen = new HashSet<>();
        if (old != null) {
            old.diagnostics().forEach(d -> seen.add(key(d)));
        }
        List<Diagnostic> fresh = new ArrayList<>();
        for (Diagnostic d : s.diagnostics()) {
            if (!seen.contains(key(d))) {
                fresh.add(d);
            }
        }
        trim();
        return new Update(s, old == null, old != null && old.state() != s.state(), fresh);
    }

    /** Takes a {@code tether/sessions} answer: the daemon's whole list. */
    public synchronized void replaceAll(List<SessionSnapshot> all) {
        byId.clear();
        for (SessionSnapshot s : all) {
            byId.put(s.id(), s);
        }
        trim();
    }

    public synchronized void clear() {
        byId.clear();
    }

    public synchronized SessionSnapshot get(String id) {
        return byId.get(id);
    }

    private static final Comparator<SessionSnapshot> NEWEST =
            Comparator.comparingLong(SessionSnapshot::created).reversed().thenComparing(SessionSnapshot::id,
                    Comparator.reverseOrder());

    /** Live sessions first, newest first; then the most recently ended ones. */
    public synchronized List<SessionSnapshot> list() {
        List<SessionSnapshot> live = new ArrayList<>();
        List<SessionSnapshot> ended = new ArrayList<>();
        for (SessionSnapshot s : byId.values()) {
            (s.isLive() ? live : ended).add(s);
        }
        live.sort(NEWEST);
        ended.sort(NEWEST);
        live.addAll(ended);
        return live;
    }

    public synchronized int liveCount() {
        return (int) byId.values().stream().filter(SessionSnapshot::isLive).count();
    }

    private void trim() {
        List<SessionSnapshot> ended = new ArrayList<>();
        for (SessionSnapshot s : byId.values()) {
            if (!s.isLive()) {
                ended.add(s);
            }
        }
        ended.sort(Comparator.comparingLong(SessionSnapshot::created).reversed());
        for (SessionSnapshot s : ended.subList(Math.min(KEEP_ENDED, ended.size()), ended.size())) {
            byId.remove(s.id());
        }
    }

    private static String key(Diagnostic d) {
        return d.id() + '\u0000' + d.message();
    }
}
