"""The part of systemd's D-Bus interfaces host-supervisor uses, as introspection XML.

Shipped instead of introspected at run time: no extra round trip per object, and the
proxies cannot grow methods we never tested. Copied from systemd 252
(``busctl introspect --xml-interface org.freedesktop.systemd1 PATH``), trimmed.
Annotations are kept where they tell how a property announces changes: ``const`` ones
(Id, LoadState, CanReload) never appear in PropertiesChanged and are re-read after a
daemon-reload; ``false`` ones (MemoryCurrent, ControlGroup) must be read when needed.
"""

from __future__ import annotations

BUS_NAME = "org.freedesktop.systemd1"
MANAGER_PATH = "/org/freedesktop/systemd1"
MANAGER_INTERFACE = "org.freedesktop.systemd1.Manager"
UNIT_INTERFACE = "org.freedesktop.systemd1.Unit"
SERVICE_INTERFACE = "org.freedesktop.systemd1.Service"
PROPERTIES_INTERFACE = "org.freedesktop.DBus.Properties"

_PROPERTIES = """
 <interface name="org.freedesktop.DBus.Properties">
  <method name="Get">
   <arg name="interface_name" direction="in" type="s"/>
   <arg name="property_name" direction="in" type="s"/>
   <arg name="value" direction="out" type="v"/>
  </method>
  <method name="GetAll">
   <arg name="interface_name" direction="in" type="s"/>
   <arg name="props" direction="out" type="a{sv}"/>
  </method>
  <signal name="PropertiesChanged">
   <arg type="s" name="interface_name"/>
   <arg type="a{sv}" name="changed_properties"/>
   <arg type="as" name="invalidated_properties"/>
  </signal>
 </interface>
"""

MANAGER_XML = f"""<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
{_PROPERTIES}
 <interface name="org.freedesktop.systemd1.Manager">
  <property name="Version" type="s" access="read">
   <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/>
  </property>
  <method name="GetUnit">
   <arg type="s" name="name" direction="in"/>
   <arg type="o" name="unit" direction="out"/>
  </method>
  <method name="LoadUnit">
   <arg type="s" name="name" direction="in"/>
   <arg type="o" name="unit" direction="out"/>
  </method>
  <method name="StartUnit">
   <arg type="s" name="name" direction="in"/>
   <arg type="s" name="mode" direction="in"/>
   <arg type="o" name="job" direction="out"/>
  </method>
  <method name="StopUnit">
   <arg type="s" name="name" direction="in"/>
   <arg type="s" name="mode" direction="in"/>
   <arg type="o" name="job" direction="out"/>
  </method>
  <method name="ReloadUnit">
   <arg type="s" name="name" direction="in"/>
   <arg type="s" name="mode" direction="in"/>
   <arg type="o" name="job" direction="out"/>
  </method>
  <method name="RestartUnit">
   <arg type="s" name="name" direction="in"/>
   <arg type="s" name="mode" direction="in"/>
   <arg type="o" name="job" direction="out"/>
  </method>
  <method name="Reload"/>
  <method name="ResetFailedUnit">
   <arg type="s" name="name" direction="in"/>
  </method>
  <method name="Subscribe">
  </method>
  <signal name="UnitNew">
   <arg type="s" name="id"/>
   <arg type="o" name="unit"/>
  </signal>
  <signal name="UnitRemoved">
   <arg type="s" name="id"/>
   <arg type="o" name="unit"/>
  </signal>
  <signal name="JobRemoved">
   <arg type="u" name="id"/>
   <arg type="o" name="job"/>
   <arg type="s" name="unit"/>
   <arg type="s" name="result"/>
  </signal>
  <signal name="Reloading">
   <arg type="b" name="active"/>
  </signal>
 </interface>
</node>
"""

#: A unit object; the Service interface is only used on ``.service`` units.
#: ``Ref``/``Unref`` pin a watched unit in memory (see manager.py).
UNIT_XML = f"""<!DOCTYPE node PUBLIC "-//freedesktop//DTD D-BUS Object Introspection 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/introspect.dtd">
<node>
{_PROPERTIES}
 <interface name="org.freedesktop.systemd1.Unit">
  <property name="Id" type="s" access="read">
   <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/>
  </property>
  <property name="LoadState" type="s" access="read">
   <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/>
  </property>
  <property name="ActiveState" type="s" access="read">
  </property>
  <property name="SubState" type="s" access="read">
  </property>
  <property name="CanReload" type="b" access="read">
   <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="const"/>
  </property>
  <property name="Job" type="(uo)" access="read">
  </property>
  <method name="Ref">
  </method>
  <method name="Unref">
  </method>
 </interface>
 <interface name="org.freedesktop.systemd1.Service">
  <property name="MainPID" type="u" access="read">
  </property>
  <property name="Result" type="s" access="read">
  </property>
  <property name="NRestarts" type="u" access="read">
  </property>
  <property name="Restart" type="s" access="read">
  </property>
  <property name="ExecMainCode" type="i" access="read">
  </property>
  <property name="ExecMainStatus" type="i" access="read">
  </property>
  <property name="MemoryCurrent" type="t" access="read">
   <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="false"/>
  </property>
  <property name="ControlGroup" type="s" access="read">
   <annotation name="org.freedesktop.DBus.Property.EmitsChangedSignal" value="false"/>
  </property>
 </interface>
</node>
"""
