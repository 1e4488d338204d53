package dev.tether.core.protocol;

import java.util.List;

/** {@code tether/sessions}: live sessions, then the most recently ended ones. */
public record SessionsResult(String version, List<SessionSnapshot> sessions) {
    @Override
    public List<SessionSnapshot> sessions() {
        return sessions == null ? List.of() : sessions;
    }
}
