"""A plugin the tests block with EXTVISOR_DISABLE_PLUGINS; importing it would be an error."""

raise RuntimeError("extvisor_fake_blocked must never be imported when blocked")
