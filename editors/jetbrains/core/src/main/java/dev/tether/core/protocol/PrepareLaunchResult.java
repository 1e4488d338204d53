package dev.tether.core.protocol;

import com.google.gson.JsonElement;
import java.util.List;
import java.util.Map;

/**
 * {@code tether/prepareLaunch}: the patched launch (same shape as sent), the environment changes
 * for clients that apply them themselves, and the doctor's findings. {@code sessionId} is
 * {@code null} when an error stopped the launch.
 */
public record PrepareLaunchResult(
        String sessionId, JsonElement launch, Map<String, String> env, List<String> envUnset,
        List<Diagnostic> diagnostics) {

    @Override
    public Map<String, String> env() {
        return env == null ? Map.of() : env;
    }

    @Override
    public List<String> envUnset() {
        return envUnset == null ? List.of() : envUnset;
    }

    @Override
    public List<Diagnostic> diagnostics() {
        return diagnostics == null ? List.of() : diagnostics;
    }

    /** The launch must not start: no session, or an error among the findings. */
    public boolean stopped() {
        return sessionId == null || diagnostics().stream().anyMatch(Diagnostic::isError);
    }
}
