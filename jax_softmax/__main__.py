from jax_softmax.cli import main_entry

main_entry()
