package dev.tether.intellij.ui;

import com.intellij.openapi.project.Project;
import com.intellij.openapi.vfs.VfsUtil;
import com.intellij.openapi.vfs.VirtualFile;
import com.jetbrains.jsonSchema.extension.JsonSchemaFileProvider;
import com.jetbrains.jsonSchema.extension.JsonSchemaProviderFactory;
import com.jetbrains.jsonSchema.extension.SchemaType;
import java.net.URL;
import java.util.List;

/** Validation and completion for {@code .tether/*.json} from the config's JSON Schema (shipped in the plugin). */
public final class TetherSchemaProviderFactory implements JsonSchemaProviderFactory {
    @Override
    public List<JsonSchemaFileProvider> getProviders(Project project) {
        return List.of(new JsonSchemaFileProvider() {
            @Override
            public boolean isAvailable(VirtualFile file) {
                VirtualFile parent = file.getParent();
                return parent != null && parent.getName().equals(".tether") && "json".equals(file.getExtension());
            }

            @Override
            public String getName() {
                return "tether config";
            }

            @Override
            public VirtualFile getSchemaFile() {
                URL url = TetherSchemaProviderFactory.class.getResource("/schemas/tether.schema.json");
                return url == null ? null : VfsUtil.findFileByURL(url);
            }

            @Override
            public SchemaType getSchemaType() {
                return SchemaType.embeddedSchema;
            }
        });
    }
}
