package dev.tether.core.rpc;

import com.google.gson.JsonElement;

/**
 * A JSON-RPC error answer: the daemon's code, message and optional data. An {@code IOException}
 * so that every failure of a call to the daemon is one checked type.
 */
public class RpcException extends java.io.IOException {
    public static final int PARSE_ERROR = -32700;
    public static final int INVALID_REQUEST = -32600;
    public static final int METHOD_NOT_FOUND = -32601;
    public static final int INVALID_PARAMS = -32602;
    public static final int INTERNAL_ERROR = -32603;
    /** LSP: the request was cancelled. */
    public static final int REQUEST_CANCELLED = -32800;

    private final int code;
    private final transient JsonElement data;

    public RpcException(int code, String message, JsonElement data) {
        super(message);
        this.code = code;
        this.data = data;
    }

    public int code() {
        return code;
    }

    public JsonElement data() {
        return data;
    }
}
