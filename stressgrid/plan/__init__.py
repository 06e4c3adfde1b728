"""The plan model and the device-script checker, shared by coordinator and generator."""
from .model import Address, Block, Opts, Plan, PlanError
from .script import ScriptError, check_script, compile_script

__all__ = ["Address", "Block", "Opts", "Plan", "PlanError", "ScriptError",
           "check_script", "compile_script"]
